"""Tags on the IAM roles that `Tags.of(...)` cannot reach.

CDK's custom resource providers (S3 auto-delete, the VPC default security group fix) declare their
roles as raw `AWS::IAM::Role` CfnResources, which the tag aspect skips. The data lake fences principals
by their `BusinessUnit` and `Stage` tags, so every role a business unit stage creates carries both:
`tag_untaggable_roles` writes the tags onto those roles' properties.

Not an aspect: a Python aspect costs one Node -> Python callback per construct at synth (about 4,000 per
synth of the default config, docs/PERFORMANCE.md); one `find_all` and a type test in Python cost one call.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnResource
from constructs import IConstruct

ROLE_TYPE = "AWS::IAM::Role"


def tag_untaggable_roles(scope: IConstruct, tags: Mapping[str, str]) -> None:
    """Write `tags` onto every raw `AWS::IAM::Role` CfnResource below `scope` that exists now: call it once
    everything below `scope` is built (the stages call it last).

    An L1 class (`iam.CfnRole`, `s3.CfnBucket`, ...) has a fixed resource type and `CfnRole` carries tags
    itself, so only constructs whose class is `CfnResource` itself can be such a role: the other ~97 % are
    told apart in Python without asking Node for their type."""
    value = [{"Key": key, "Value": tag} for key, tag in sorted(tags.items())]
    for node in scope.node.find_all():
        if type(node) is CfnResource and node.cfn_resource_type == ROLE_TYPE:
            node.add_property_override("Tags", value)
