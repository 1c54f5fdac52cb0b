"""Pure helpers of the evaluation stack: model ARNs from the config and the lake bucket naming contract."""

from __future__ import annotations

import pytest
from evaluation.settings import CandidateModel, EvaluationSettings, JudgeSettings

from common.lake_layout import Zone
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, lake_bucket_name, lake_statements
from stacks.blocks.model_access import bedrock_model_arns, invoked_models, model_resources
from stacks.settings import PlatformConfig

WHERE = {"partition": "aws", "region": "eu-west-1", "account": "333333333332"}


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            ["arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"],
        ),
        (
            "eu.amazon.nova-lite-v1:0",
            [
                "arn:aws:bedrock:eu-west-1:333333333332:inference-profile/eu.amazon.nova-lite-v1:0",
                "arn:aws:bedrock:*::foundation-model/amazon.nova-lite-v1:0",
            ],
        ),
        (
            "arn:aws:bedrock:eu-west-1:333333333332:provisioned-model/abc",
            ["arn:aws:bedrock:eu-west-1:333333333332:provisioned-model/abc"],
        ),
    ],
)
def test_bedrock_arns_cover_exactly_the_model_or_profile(model_id: str, expected: list[str]) -> None:
    assert bedrock_model_arns(model_id, **WHERE) == expected


def test_model_resources_include_the_judge_and_lower_case_endpoints_once() -> None:
    settings = EvaluationSettings(
        candidates=[
            CandidateModel(
                name="a", provider="sagemaker", endpoint_name="Retail-MME", target_model="x.tar.gz"
            ),
            CandidateModel(
                name="b", provider="sagemaker", endpoint_name="retail-mme", target_model="y.tar.gz"
            ),
        ],
        judge=JudgeSettings(model=CandidateModel(name="j", provider="bedrock", model_id="mistral.large")),
    )
    assert [m.name for m in invoked_models(settings)] == ["a", "b", "j"]
    assert model_resources(invoked_models(settings), **WHERE) == (
        ["arn:aws:bedrock:eu-west-1::foundation-model/mistral.large"],
        ["arn:aws:sagemaker:eu-west-1:333333333332:endpoint/retail-mme"],
    )
    assert model_resources([], **WHERE) == ([], [])


def test_lake_bucket_name_follows_the_cross_account_contract(default_config: PlatformConfig) -> None:
    assert lake_bucket_name(default_config, Zone.EVALUATION_RESULTS) == (
        "exco-lake-evaluation-results-222222222222-eu-west-1"
    )


def test_lake_key_use_is_limited_by_alias_and_s3(default_config: PlatformConfig) -> None:
    request = LakeAccessRequest(
        business_unit="retail", stage="preprod", zone=Zone.EVALUATION_RESULTS, access=LakeAccess.WRITE
    )
    statements = lake_statements(default_config, request)
    (key,) = [s for s in statements if s["Action"][0].startswith("kms:")]
    assert key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert key["Resource"][0].endswith(":kms:eu-west-1:222222222222:key/*")
    assert key["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"},
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/exco/data-lake"]},
    }
    (objects,) = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert objects["Resource"][0].endswith(
        ":s3:::exco-lake-evaluation-results-222222222222-eu-west-1/retail/preprod/*"
    )
    assert "s3:GetObject" not in objects["Action"]
