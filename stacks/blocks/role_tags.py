"""Tags on the IAM roles that `Tags.of(...)` cannot reach.

CDK's custom resource providers (S3 auto-delete, the VPC default security group fix) declare their
roles as raw `AWS::IAM::Role` CfnResources, which the tag aspect skips. The data lake fences principals
by their `BusinessUnit` and `Stage` tags, so every role a business unit stage creates carries both:
this aspect writes the tags onto those roles' properties.
"""

from __future__ import annotations

from collections.abc import Mapping

import jsii
from aws_cdk import Aspects, CfnResource, IAspect
from aws_cdk import aws_iam as iam
from constructs import IConstruct


@jsii.implements(IAspect)
class TagUntaggableRoles:
    def __init__(self, tags: Mapping[str, str]) -> None:
        self.tags = dict(tags)

    def visit(self, node: IConstruct) -> None:
        if (
            isinstance(node, CfnResource)
            and not isinstance(node, iam.CfnRole)
            and node.cfn_resource_type == "AWS::IAM::Role"
        ):
            node.add_property_override(
                "Tags", [{"Key": key, "Value": value} for key, value in sorted(self.tags.items())]
            )


def tag_untaggable_roles(scope: IConstruct, tags: Mapping[str, str]) -> None:
    Aspects.of(scope).add(TagUntaggableRoles(tags))
