"""Guardrail service of one business unit in one stage: the Bedrock guardrail and the filter function.

The function is invoked directly by other services (`grant_invoke`), or its code is imported in-process
when the business unit's `guardrails.packaging` says so (see `guardrail.client`). It writes decision
records to the data lake's filter_decisions zone under the business unit's own prefix.
"""

from __future__ import annotations

import hashlib
import json
import math

from aws_cdk import Aws
from aws_cdk import aws_bedrock as bedrock
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct
from guardrail.bedrock_policy import cdk_keywords, guardrail_properties
from guardrail.settings import BedrockGuardrailDefinition, GuardrailSettings

from common.lake_layout import LakeScope, Zone
from stacks.baseline_stack import BaselineStack
from stacks.blocks import durations
from stacks.blocks.grants import allow
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, grant_lake_access, lake_bucket_name
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.python_function import PlatformFunction
from stacks.settings import EnvironmentSpec, PlatformConfig

# Lambda refuses more than 4 KB of environment variables in all; leave room for the others.
MAX_SETTINGS_ENV_BYTES = 3072
GUARDRAIL_NAME_MAX = 50


def settings_env(business_unit: str, settings: GuardrailSettings) -> str:
    """The settings as the function reads them: defaults left out (the same model fills them back in)."""
    encoded = settings.model_dump_json(exclude_defaults=True)
    size = len(encoded.encode())
    if size > MAX_SETTINGS_ENV_BYTES:
        raise ValueError(
            f"business_units[{business_unit}].guardrails: {size} bytes as JSON, more than the "
            f"{MAX_SETTINGS_ENV_BYTES} a Lambda environment can hold; shorten local_rules.deny_terms / "
            "deny_patterns or move long word lists into bedrock_guardrail.definition.words"
        )
    return encoded


def comprehend_actions(settings: GuardrailSettings) -> list[str]:
    """The Comprehend actions of the layers switched on in either direction."""
    switches = [settings.input.layers, settings.output.layers]
    return sorted(
        {"comprehend:DetectToxicContent" for s in switches if s.toxicity}
        | {"comprehend:DetectPiiEntities" for s in switches if s.pii}
    )


def guardrail_name(environment: EnvironmentSpec, definition: BedrockGuardrailDefinition) -> str:
    """Guardrail names are unique per account and region: prefix the environment (sandbox shares one)."""
    return f"{environment.name}-{definition.name}"[:GUARDRAIL_NAME_MAX]


def definition_digest(properties: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()[:16]


class GuardrailStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="guardrail",
            description=f"LLMOps guardrail service for {environment.name}: Bedrock guardrail, filter function",
        )
        settings = environment.business_unit.guardrails
        encoded = settings_env(environment.business_unit.name, settings)

        self.guardrail: bedrock.CfnGuardrail | None = None
        self.guardrail_version: bedrock.CfnGuardrailVersion | None = None
        self.guardrail_arn: str | None = None
        self.guardrail_key = baseline.key
        environment_variables = {
            "GUARDRAIL_SETTINGS": encoded,
            "BUSINESS_UNIT": environment.business_unit.name,
            "FILTER_DECISIONS_BUCKET": lake_bucket_name(config, Zone.FILTER_DECISIONS),
            "LAKE_STAGE": environment.stage.value,
        }
        reference = self._bedrock_guardrail(settings, environment, baseline)
        # (id, version) of the Bedrock guardrail, for services running the engine in-process.
        self.bedrock_ref = reference
        if reference is not None:
            environment_variables["BEDROCK_GUARDRAIL_ID"] = reference[0]
            environment_variables["BEDROCK_GUARDRAIL_VERSION"] = reference[1]

        vpc, security_groups = self._network(settings, environment, baseline)
        slowest_layer = max(settings.input.layer_timeout_s, settings.output.layer_timeout_s)
        self.function = PlatformFunction(
            self,
            "Filter",
            service="guardrail",
            description=f"Input/output guardrail of {environment.name}",
            key=baseline.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=baseline.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            environment=environment_variables,
            # Layers run concurrently: the slowest timeout bounds a verdict; the rest is start-up and S3.
            timeout=durations.seconds(max(30, math.ceil(slowest_layer) + 15)),
            vpc=vpc,
            security_groups=security_groups,
            unscoped_actions=tuple(comprehend_actions(settings)),
        )
        self.settings = settings
        self._config = config
        self.grant_runtime_permissions(self.function.role)

    @property
    def function_name(self) -> str:
        return self.function.function.function_name

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let another service's role call the guardrail (the only way in: no URL, no API). Callers invoke
        the unqualified function name, so no version or alias wildcard is granted."""
        return self.function.function.grant_invoke_latest_version(grantee)

    def _bedrock_guardrail(
        self, settings: GuardrailSettings, environment: EnvironmentSpec, baseline: BaselineStack
    ) -> tuple[str, str] | None:
        configured = settings.bedrock_guardrail
        if configured is None:
            return None
        if configured.definition is None:
            assert configured.guardrail_id is not None and configured.version is not None  # validated
            identifier = configured.guardrail_id
            self.guardrail_arn = (
                identifier
                if identifier.startswith("arn:")
                else f"arn:{Aws.PARTITION}:bedrock:{environment.region}:{environment.account}:guardrail/{identifier}"
            )
            return identifier, configured.version
        properties = guardrail_properties(configured.definition)
        properties["Name"] = guardrail_name(environment, configured.definition)
        self.guardrail = bedrock.CfnGuardrail(
            self, "BedrockGuardrail", **cdk_keywords(properties), kms_key_arn=baseline.key.key_arn
        )
        # A version is a snapshot of the guardrail; its description is create-only, so carrying the
        # definition's digest publishes a new version whenever the definition changes.
        self.guardrail_version = bedrock.CfnGuardrailVersion(
            self,
            "BedrockGuardrailVersion",
            guardrail_identifier=self.guardrail.attr_guardrail_id,
            description=f"{environment.name} definition {definition_digest(properties)}",
        )
        self.guardrail_arn = self.guardrail.attr_guardrail_arn
        return self.guardrail.attr_guardrail_id, self.guardrail_version.attr_version

    def _network(
        self, settings: GuardrailSettings, environment: EnvironmentSpec, baseline: BaselineStack
    ) -> tuple[ec2.IVpc | None, list[ec2.ISecurityGroup] | None]:
        """In the VPC only where the stage has interface endpoints: the subnets have no other way out."""
        if not environment.settings.interface_endpoints:
            return None, None
        network = baseline.network
        network.add_interface_endpoint("Comprehend", ec2.InterfaceVpcEndpointAwsService.COMPREHEND)
        network.add_interface_endpoint("XRay", ec2.InterfaceVpcEndpointAwsService.XRAY)
        if settings.bedrock_guardrail is not None:
            network.add_interface_endpoint(
                "BedrockRuntime", ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME
            )
        security_group = ec2.SecurityGroup(
            self,
            "FilterSecurityGroup",
            vpc=network.vpc,
            description="Guardrail function: HTTPS out to the VPC endpoints only",
            allow_all_outbound=False,
        )
        # HTTPS only. The isolated subnets route nowhere but to the VPC endpoints; the S3 gateway endpoint is
        # reached through its prefix list, whose id would need a synth-time lookup, hence any address.
        security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to the VPC endpoints")
        return network.vpc, [security_group]

    def grant_runtime_permissions(self, grantee: iam.IGrantable) -> None:
        """What running the filter takes: the function's own role, or (`packaging: in_process`) the role of
        the service that imports the engine. Comprehend and ApplyGuardrail for the enabled layers, the
        guardrail's key, and writing decision records under the business unit's lake prefix."""
        settings = self.settings
        role = grantee.grant_principal
        switches = [settings.input.layers, settings.output.layers]
        detect_actions = comprehend_actions(settings)
        if detect_actions:
            # Comprehend's real-time detection actions have no resource type (Service Authorization
            # Reference, Amazon Comprehend): "*" is the only resource they accept.
            allow(role, actions=detect_actions, resources=["*"])
        if self.guardrail_arn is not None and any(s.bedrock for s in switches):
            allow(role, actions=["bedrock:ApplyGuardrail"], resources=[self.guardrail_arn])
            if self.guardrail is not None:
                # The provisioned guardrail is encrypted with the environment key; applying it decrypts.
                self.guardrail_key.grant_decrypt(grantee)
        grant_lake_access(
            grantee,
            self._config,
            LakeAccessRequest(
                business_unit=self.environment_spec.business_unit.name,
                stage=LakeScope(self.environment_spec.stage.value),
                zone=Zone.FILTER_DECISIONS,
                access=LakeAccess.WRITE,
            ),
        )
