"""Training and inference image repositories (ECR), one pair per business unit.

Per business unit rather than shared: an ECR repository policy applies to the whole repository (no
condition narrows a pull to some images or tags), so only separate repositories keep one business
unit from pulling another's images. Pushes come from the tooling account (CI); the business unit's
accounts may only pull.
"""

from __future__ import annotations

from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.blocks import durations
from stacks.blocks.business_unit_access import BusinessUnitAccess
from stacks.blocks.retention import DataRetention
from stacks.settings.tooling import ImageRepositorySettings

IMAGE_KINDS = ("training", "inference")
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")


def repository_name(prefix: str, business_unit: str, kind: str) -> str:
    return f"{prefix}/{business_unit}/{kind}"


class ImageRepositories(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        accesses: list[BusinessUnitAccess],
        key: kms.IKey,
        settings: ImageRepositorySettings,
        retention: DataRetention,
    ) -> None:
        super().__init__(scope, construct_id)
        self.repositories: dict[tuple[str, str], ecr.Repository] = {}
        for access in accesses:
            for kind in IMAGE_KINDS:
                repository = ecr.Repository(
                    self,
                    f"{access.business_unit}-{kind}",
                    repository_name=repository_name(prefix, access.business_unit, kind),
                    image_scan_on_push=True,
                    image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                    encryption=ecr.RepositoryEncryption.KMS,
                    encryption_key=key,
                    removal_policy=retention.removal_policy,
                    lifecycle_rules=[
                        ecr.LifecycleRule(
                            rule_priority=1,
                            description="untagged images are failed or superseded pushes",
                            tag_status=ecr.TagStatus.UNTAGGED,
                            max_image_age=durations.days(settings.untagged_expiry_days),
                        ),
                        ecr.LifecycleRule(
                            rule_priority=2,
                            description="keep the newest tagged images",
                            tag_status=ecr.TagStatus.ANY,
                            max_image_count=settings.keep_tagged_images,
                        ),
                    ],
                )
                repository.add_to_resource_policy(
                    access.statement(sid="Pull", accounts=access.accounts, actions=PULL_ACTIONS)
                )
                self.repositories[(access.business_unit, kind)] = repository
