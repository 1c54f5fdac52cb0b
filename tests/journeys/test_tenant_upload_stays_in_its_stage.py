"""Journey: a tenant's upload in one stage starts that stage's fine-tuning, and no other stage reaches it.

Hops: the app backend's presigned POST (real `TenantUploads`) names the key -> S3's "Object Created"
event matches the prod fine-tuning stack's rule (tenants fine-tune where they live: preprod and prod by
default) -> the real trigger handler starts the pipeline with the tenant's uploads prefix (botocore Stubber)
-> the pipeline's job role may read that key (its IAM policy and the lake's bucket and key policies,
evaluated with tests/stacks/policy_eval.py). Negative journeys: a dev tenant's upload, another business
unit's upload, and the prod role reading dev data.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from common.fine_tuning_runs import TenantUseCases
from common.lake_layout import Zone
from stacks.blocks.lake_access import lake_bucket_name
from stacks.settings import Stage
from tests.conftest import SynthesizedPlatform
from tests.journeys._lake_events import matches, s3_object_created
from tests.lambdas.fine_tuning._leases import LEASES_TABLE, create_leases_table
from tests.stacks.policy_eval import Request, decide, resolve, secure_context

BU, TENANT = "retail", "tenant-a"


class FakeSts:
    def assume_role(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["Tags"] == [{"Key": "TenantId", "Value": TENANT}]
        return {
            "Credentials": {"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "secret", "SessionToken": "t"}
        }


def presigned_upload_key(platform: SynthesizedPlatform, stage: str) -> str:
    from app_backend.settings import Uploads
    from app_backend.uploads import TenantUploads

    uploads = TenantUploads(
        bucket=lake_bucket_name(platform.config, Zone.RAW),
        business_unit=BU,
        stage=stage,
        role_arn="arn:aws:iam::333333333333:role/upload",
        settings=Uploads(),
        sts=FakeSts(),
        s3_factory=lambda creds: boto3.client(
            "s3",
            region_name=platform.config.home_region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        ),
    )
    post = uploads.presigned_post(TENANT, "train.jsonl", "application/jsonl")
    key: str = post["key"]
    assert post["fields"]["key"] == key
    return key


def upload_rule(platform: SynthesizedPlatform, business_unit: str) -> dict[str, Any]:
    template = platform.template(f"exco-{business_unit}-prod-fine-tuning")
    (rule,) = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and r["Properties"]["EventPattern"].get("source") == ["aws.s3"]
    ]
    pattern: dict[str, Any] = rule["Properties"]["EventPattern"]
    return pattern


def job_role_statements(platform: SynthesizedPlatform) -> list[dict[str, Any]]:
    """The identity policy statements of the prod fine-tuning role that reads the raw zone."""
    template = platform.template(f"exco-{BU}-prod-fine-tuning")
    raw = lake_bucket_name(platform.config, Zone.RAW)
    for policy in (r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"):
        statements = resolve(policy["Properties"]["PolicyDocument"]["Statement"], template)
        if raw in str(statements):
            return [{**s, "Principal": "*"} for s in statements]
    raise AssertionError("no role of the fine-tuning stack reads the raw zone")


def lake_allows_read(platform: SynthesizedPlatform, key: str) -> tuple[str, str]:
    """(bucket policy, key policy) decisions for the prod account's tagged fine-tuning role reading `key`."""
    config = platform.config
    account = config.environment(config.business_unit(BU), Stage.PROD).account
    bucket = lake_bucket_name(config, Zone.RAW)
    tags = {"aws:PrincipalTag/BusinessUnit": BU, "aws:PrincipalTag/Stage": "prod"}
    lake = platform.template("exco-data-lake")
    (policy,) = [
        r
        for r in lake["Resources"].values()
        if r["Type"] == "AWS::S3::BucketPolicy"
        and lake["Resources"][r["Properties"]["Bucket"]["Ref"]]["Properties"].get("BucketName") == bucket
    ]
    bucket_statements = resolve(policy["Properties"]["PolicyDocument"]["Statement"], lake)
    s3 = decide(
        bucket_statements,
        Request(account, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", secure_context(**tags)),
    )
    (kms_key,) = [r for r in lake["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    key_context = {
        **tags,
        "kms:ViaService": f"s3.{config.home_region}.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}/{key}",
    }
    kms = decide(
        resolve(kms_key["Properties"]["KeyPolicy"]["Statement"], lake),
        Request(account, "kms:Decrypt", "arn:aws:kms:eu-west-1:222222222222:key/lake", key_context),
    )
    return s3, kms


def run_trigger(event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The trigger reads the event from its SQS queue (the rule's target) and starts the pipeline."""
    from fine_tuning_trigger import handler

    for name, value in {
        "PIPELINE_NAME": "exco-retail-prod-fine-tuning",
        "BUSINESS_UNIT": BU,
        "STAGE": "prod",
        "MAX_CONCURRENT_RUNS": "2",
        "MAX_RUNTIME_HOURS": "12",
        "RUN_LEASES_TABLE": LEASES_TABLE,
        # retail's use cases (config/platform.yaml), as the stack writes them.
        TenantUseCases.ENV: TenantUseCases(
            default="product-qa", names=("product-qa", "review-summarization")
        ).to_json(),
        "POWERTOOLS_TRACE_DISABLED": "1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("sagemaker", region_name="eu-west-1")
    monkeypatch.setattr(handler, "sagemaker_client", lambda: client)
    with mock_aws():  # the cap's lease table
        leases = create_leases_table("eu-west-1")
        monkeypatch.setattr(handler, "dynamodb_client", lambda: leases)
        return _start(event, handler, client)


def _start(event: dict[str, Any], handler: Any, client: Any) -> dict[str, Any]:
    arn = "arn:aws:sagemaker:eu-west-1:333333333333:pipeline/exco-retail-prod-fine-tuning/execution/e1"
    with Stubber(client) as stubber:
        bucket, key = event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
        stubber.add_response(
            "start_pipeline_execution",
            {"PipelineExecutionArn": arn},
            {
                "PipelineName": "exco-retail-prod-fine-tuning",
                "PipelineExecutionDisplayName": f"tenant-{TENANT}",
                "PipelineParameters": [
                    {"Name": "TenantId", "Value": TENANT},
                    {"Name": "ModelName", "Value": "personal"},
                    {"Name": "InputDataUri", "Value": f"s3://{bucket}/{BU}/prod/tenant={TENANT}/uploads/"},
                    {"Name": "UseCase", "Value": "product-qa"},  # an upload trains the default use case
                ],
                "ClientRequestToken": ANY,
            },
        )
        message = {"Records": [{"messageId": "m1", "body": json.dumps(event)}]}
        result: dict[str, Any] = handler.lambda_handler(message, LambdaContext())
        stubber.assert_no_pending_responses()
    assert key.startswith(f"{BU}/prod/tenant={TENANT}/uploads/")
    return result


class LambdaContext:
    function_name = "fine-tuning-trigger"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:333333333331:function:fine-tuning-trigger"
    aws_request_id = "req-1"


def test_a_prod_tenant_upload_starts_the_prod_pipeline_which_may_read_it(
    default_platform: SynthesizedPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = default_platform.config
    key = presigned_upload_key(default_platform, "prod")
    event = s3_object_created(
        lake_bucket_name(config, Zone.RAW), key, account=config.data_lake_account, region=config.home_region
    )
    assert matches(upload_rule(default_platform, BU), event)
    assert run_trigger(event, monkeypatch) == {"batchItemFailures": []}
    # The pipeline reads what the trigger pointed it at: its IAM policy, the bucket and the key allow it.
    request = Request(
        "any", "s3:GetObject", f"arn:aws:s3:::{lake_bucket_name(config, Zone.RAW)}/{key}", secure_context()
    )
    assert decide(job_role_statements(default_platform), request) == "allow"
    assert lake_allows_read(default_platform, key) == ("allow", "allow")


def test_a_dev_tenant_upload_reaches_no_prod_pipeline_and_no_prod_role(
    default_platform: SynthesizedPlatform,
) -> None:
    config = default_platform.config
    key = presigned_upload_key(default_platform, "dev")
    assert key.startswith(f"{BU}/dev/tenant={TENANT}/uploads/")
    event = s3_object_created(
        lake_bucket_name(config, Zone.RAW), key, account=config.data_lake_account, region=config.home_region
    )
    assert not matches(upload_rule(default_platform, BU), event)
    request = Request(
        "any", "s3:GetObject", f"arn:aws:s3:::{lake_bucket_name(config, Zone.RAW)}/{key}", secure_context()
    )
    assert decide(job_role_statements(default_platform), request) == "implicit"
    assert lake_allows_read(default_platform, key) == ("deny", "implicit")


def test_another_business_units_upload_matches_no_rule_of_this_one(
    default_platform: SynthesizedPlatform,
) -> None:
    config = default_platform.config
    key = f"finance/prod/tenant={TENANT}/uploads/u1/train.jsonl"
    event = s3_object_created(
        lake_bucket_name(config, Zone.RAW), key, account=config.data_lake_account, region=config.home_region
    )
    assert not matches(upload_rule(default_platform, BU), event)
    # Control: the same event under this business unit's prefix does match. (Finance fine-tunes nothing
    # in the sample config: it serves complete models on a multi-model endpoint, so it has no rule.)
    own = s3_object_created(
        lake_bucket_name(config, Zone.RAW),
        key.replace("finance/", f"{BU}/", 1),
        account=config.data_lake_account,
        region=config.home_region,
    )
    assert matches(upload_rule(default_platform, BU), own)
    assert lake_allows_read(default_platform, key) == ("deny", "implicit")
