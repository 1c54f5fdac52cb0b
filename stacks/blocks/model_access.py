"""Exactly which model resources a role may invoke, derived from the configured candidate models.

Bedrock's Converse API is authorized by `bedrock:InvokeModel` (IAM has no `bedrock:Converse` action).
A cross-region inference profile id (`eu.anthropic...`) needs the profile in this account and the
foundation model in every region the profile routes to, hence `*` in the region of that one ARN.
SageMaker endpoint ARNs are lower case whatever the endpoint's spelling.
"""

from __future__ import annotations

from collections.abc import Iterable

from evaluation.settings import CandidateModel, EvaluationSettings

BEDROCK_INVOKE_ACTIONS = ("bedrock:InvokeModel",)
SAGEMAKER_INVOKE_ACTIONS = ("sagemaker:InvokeEndpoint",)
# Geographic prefixes of Bedrock's system-defined cross-region inference profiles.
INFERENCE_PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "jp", "au", "ca", "global"})


def bedrock_model_arns(model_id: str, *, partition: str, region: str, account: str) -> list[str]:
    if model_id.startswith("arn:"):
        return [model_id]
    geography, _, base_model = model_id.partition(".")
    if geography in INFERENCE_PROFILE_PREFIXES and base_model:
        return [
            f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}",
            f"arn:{partition}:bedrock:*::foundation-model/{base_model}",
        ]
    return [f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"]


def sagemaker_endpoint_arn(endpoint_name: str, *, partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:sagemaker:{region}:{account}:endpoint/{endpoint_name.lower()}"


def invoked_models(settings: EvaluationSettings) -> list[CandidateModel]:
    """The candidates plus the judge: every model an evaluation run may call."""
    judge = [settings.judge.model] if settings.judge.model is not None else []
    return [*settings.candidates, *judge]


def model_resources(
    models: Iterable[CandidateModel], *, partition: str, region: str, account: str
) -> tuple[list[str], list[str]]:
    """(Bedrock resource ARNs, SageMaker endpoint ARNs), sorted and without repeats."""
    bedrock: set[str] = set()
    sagemaker: set[str] = set()
    for model in models:
        if model.provider == "bedrock" and model.model_id:
            bedrock.update(
                bedrock_model_arns(model.model_id, partition=partition, region=region, account=account)
            )
        elif model.provider == "sagemaker" and model.endpoint_name:
            sagemaker.add(
                sagemaker_endpoint_arn(
                    model.endpoint_name, partition=partition, region=region, account=account
                )
            )
    return sorted(bedrock), sorted(sagemaker)
