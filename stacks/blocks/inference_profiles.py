"""Which Bedrock application inference profiles a stage needs, what they are called, what they copy.

Every Bedrock model call of a business unit stage goes through an application inference profile tagged
with BusinessUnit, Stage, CostCenter (and UseCase where per use case), so Cost Explorer, cost allocation
reports and AWS Budgets see model spend per business unit, stage and use case. A role may invoke a
foundation model only through its profile: IAM allows `bedrock:InvokeModel` on the profile, and on the
models it routes to only with the condition `bedrock:InferenceProfileArn` = that profile.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from stacks.blocks.model_access import INFERENCE_PROFILE_PREFIXES
from stacks.settings import BusinessUnit
from stacks.settings.evaluation import EvaluationSettings

MAX_PROFILE_NAME = 64
PROFILE_CONDITION_KEY = "bedrock:InferenceProfileArn"


@dataclass(frozen=True, order=True)
class ProfileKey:
    """One profile: a Bedrock model id (or system-defined cross-region profile id), optionally per use case."""

    model_id: str
    use_case: str | None = None


def is_cross_region(model_id: str) -> bool:
    geography, _, base = model_id.partition(".")
    return geography in INFERENCE_PROFILE_PREFIXES and bool(base)


def copy_from_arn(model_id: str, *, partition: str, region: str, account: str) -> str:
    """What the profile copies: the foundation model, or the system-defined cross-region profile."""
    if is_cross_region(model_id):
        return f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}"
    return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"


def routed_resources(model_id: str, *, partition: str, region: str, account: str) -> list[str]:
    """Resources a profile call reaches besides the profile: the foundation model (in every region a
    cross-region profile routes to) and the system-defined profile it copies."""
    if is_cross_region(model_id):
        base = model_id.partition(".")[2]
        return [
            copy_from_arn(model_id, partition=partition, region=region, account=account),
            f"arn:{partition}:bedrock:*::foundation-model/{base}",
        ]
    return [copy_from_arn(model_id, partition=partition, region=region, account=account)]


def profile_name(environment_name: str, key: ProfileKey) -> str:
    """`<env>[-<use case>]-<model>`: letters, digits and single '-' (the service's pattern), at most 64
    characters; a long name keeps its start and gets a short hash so it stays unique."""
    raw = "-".join(part for part in (environment_name, key.use_case, key.model_id) if part)
    name = re.sub(r"[^0-9A-Za-z]+", "-", raw).strip("-")
    if len(name) > MAX_PROFILE_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: MAX_PROFILE_NAME - 9].rstrip('-')}-{digest}"
    return name


def evaluation_models(settings: EvaluationSettings) -> list[str]:
    """Bedrock model ids an evaluation run (and the online judge) calls: candidates and the judge."""
    models = [*settings.candidates, *([settings.judge.model] if settings.judge.model else [])]
    return sorted({m.model_id for m in models if m.provider == "bedrock" and m.model_id})


def application_key(business_unit: BusinessUnit, use_case: str) -> ProfileKey | None:
    """The profile the application backend's default model uses (None for a SageMaker default model)."""
    model = business_unit.application.default_model
    if model.provider != "bedrock" or not model.model_id:
        return None
    per_use_case = business_unit.model_usage.inference_profiles == "use_case"
    return ProfileKey(model.model_id, use_case if per_use_case else None)


def application_use_case(business_unit: BusinessUnit) -> str:
    return business_unit.application.use_case or business_unit.use_cases[0]


def planned_profiles(business_unit: BusinessUnit) -> list[ProfileKey]:
    """Every profile one stage of the business unit needs, sorted (stable logical ids)."""
    keys = {ProfileKey(model_id) for model_id in evaluation_models(business_unit.evaluation)}
    app = application_key(business_unit, application_use_case(business_unit))
    if app is not None:
        keys.add(app)
    return sorted(keys, key=lambda k: (k.use_case or "", k.model_id))
