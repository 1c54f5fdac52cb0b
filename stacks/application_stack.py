"""The business unit's end-user API: Cognito, API Gateway (Cognito authorizer), WAF, the backend function,
its table, and the tenant-scoped upload role (ABAC on the raw zone prefix).

The backend uses the stage's guardrail (its Lambda, or the engine in-process, as `guardrails.packaging`
says), the shared prompt catalog (read access, SigV4) and, where the stage has one, the fine-tuning
pipeline. Lake access goes through `grant_lake_access`, so the lake side allows what the roles ask for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Aws
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from common.fine_tuning_runs import TenantUseCases
from common.lake_layout import LakeScope, Zone
from common.model_pricing import load_price_table
from stacks.blocks import durations
from stacks.blocks.grants import allow
from stacks.blocks.inference_profiles import application_key
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, grant_lake_access, lake_bucket_name
from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.nag import acknowledge, acknowledge_all
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.prompt_catalog_access import (
    grant_prompt_catalog_invoke,
    prompt_catalog_invoke_arns,
    prompt_release_role,
)
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.retention import retention_for
from stacks.fine_tuning_stack import FineTuningStack
from stacks.guardrail_stack import GuardrailStack, settings_env
from stacks.serving_stack import ServingStack
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.application import ApplicationSettings

if TYPE_CHECKING:
    from stacks.model_profiles_stack import ModelProfilesStack
    from stacks.model_usage_stack import ModelUsageStack

API_STAGE = "v1"
# (path, methods) the backend serves; every one gets the Cognito authorizer.
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("invoke", ("POST",)),
    ("ratings", ("POST",)),
    ("uploads", ("GET", "POST")),
    ("fine-tunes", ("POST",)),
    ("fine-tunes/{id}", ("GET",)),
    ("models", ("GET",)),
)
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)
_MFA = {"off": cognito.Mfa.OFF, "optional": cognito.Mfa.OPTIONAL, "required": cognito.Mfa.REQUIRED}
_THREAT = {
    "audit": cognito.StandardThreatProtectionMode.AUDIT_ONLY,
    "enforced": cognito.StandardThreatProtectionMode.FULL_FUNCTION,
}


_TABLE_KEY = (
    "CDK's DynamoDB read/write grant on the table's customer managed key; the resource is that one key "
    "ARN, the wildcard is only in the action names (GenerateDataKey*, ReEncrypt*)"
)
_CATALOG = (
    "The prompt catalog API lives in the tooling account and its id is not known here at synth time; "
    "the grant is limited to that account, region and the catalog's stage, and to reading routes"
)
TENANT_TAG = "TenantId"


def nag_name(value: str) -> str:
    """How cdk-nag prints a resource: pseudo parameters in angle brackets."""
    return value.replace(Aws.PARTITION, "<AWS::Partition>")


def acknowledge_findings(construct: Construct, findings: dict[str, str]) -> None:
    acknowledge_all(
        construct, [(f"AwsSolutions-IAM5[{nag_name(f)}]", reason) for f, reason in findings.items()]
    )


def waf_enabled(environment: EnvironmentSpec, settings: ApplicationSettings) -> bool:
    return environment.stage is not Stage.DEV or settings.waf_in_dev


def upload_request(business_unit: str, stage: str) -> LakeAccessRequest:
    """What a session tagged TenantId=<t> may do: read and write its own tenant prefix of the stage's raw
    zone (presigned POSTs under `uploads/`, listing them back), nothing else."""
    return LakeAccessRequest(
        business_unit=business_unit,
        stage=LakeScope(stage),
        zone=Zone.RAW,
        access=LakeAccess.READ_WRITE,
        tenant_from_principal_tag=TENANT_TAG,
    )


class ApplicationStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        key: kms.IKey,
        guardrail: GuardrailStack,
        fine_tuning: FineTuningStack | None = None,
        profiles: ModelProfilesStack,
        usage: ModelUsageStack | None = None,
        serving: ServingStack | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="application",
            description=f"LLMOps application backend for {environment.name}: Cognito, REST API, WAF, backend",
        )
        bu = environment.business_unit
        self.settings = bu.application
        use_case = self.settings.use_case or bu.use_cases[0]
        if use_case not in bu.use_cases:
            raise ValueError(
                f"business_units[{bu.name}].application.use_case: {use_case!r} is not one of {bu.use_cases}"
            )
        self.retention = retention_for(environment.stage)
        self.key = key
        self.profiles = profiles
        self.user_pool = self._user_pool(environment)
        self.client = self._web_client()
        self.table = dynamodb.Table(
            self,
            "Requests",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="expires_at",
            removal_policy=self.retention.removal_policy,
        )
        self.backend = self._backend(config, environment, use_case)
        self._use_guardrail(config, guardrail)
        self._use_fine_tuning(fine_tuning)
        if usage is not None:
            # Usage records and online-evaluation samples (docs/cost.md), queued after each answer.
            for name, value in usage.grant_send(self.backend.role).items():
                self.backend.function.add_environment(name, value)
        self._use_model_records(serving)
        self.upload_role = self._upload_role(config, environment)
        self.backend.function.add_environment("UPLOAD_ROLE_ARN", self.upload_role.role_arn)
        self.api = self._rest_api(environment)
        # The stage's identity for moving its own alias in the shared prompt catalog (issue 16 item 2).
        self.prompt_release_role = prompt_release_role(self, config, environment)
        if waf_enabled(environment, self.settings):
            self.web_acl = self._web_acl(environment)
        else:
            acknowledge(
                self.api.deployment_stage,
                "AwsSolutions-APIG3",
                "Dev stage without WAF by config (application.waf_in_dev: false) to save its monthly cost; "
                "the Cognito authorizer and stage throttling still guard every method",
            )

    def _web_client(self) -> cognito.UserPoolClient:
        """SRP sign-in; with `hosted_sign_in.callback_urls`, also Cognito's hosted pages with the
        authorization code grant only (no implicit grant, no secret: a public client that uses PKCE), to
        exactly the configured URLs. Without callback URLs OAuth is off: CDK's default would otherwise
        enable the implicit grant with the placeholder callback https://example.com."""
        hosted = self.settings.hosted_sign_in
        oauth: dict[str, Any] = {"disable_o_auth": True}
        if hosted.callback_urls:
            oauth = {
                "o_auth": cognito.OAuthSettings(
                    flows=cognito.OAuthFlows(authorization_code_grant=True, implicit_code_grant=False),
                    scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
                    callback_urls=list(hosted.callback_urls),
                    logout_urls=list(hosted.logout_urls) or None,
                ),
                "supported_identity_providers": [cognito.UserPoolClientIdentityProvider.COGNITO],
            }
            self.user_pool.add_domain(
                "HostedSignIn",
                cognito_domain=cognito.CognitoDomainOptions(domain_prefix=hosted.domain_prefix or ""),
            )
        return self.user_pool.add_client(
            "WebClient",
            auth_flows=cognito.AuthFlow(user_srp=True),
            generate_secret=False,
            prevent_user_existence_errors=True,
            id_token_validity=durations.hours(1),
            access_token_validity=durations.hours(1),
            refresh_token_validity=durations.days(30),
            **oauth,
        )

    def _user_pool(self, environment: EnvironmentSpec) -> cognito.UserPool:
        sign_up = self.settings.sign_up
        password = sign_up.password
        threat = sign_up.threat_protection
        pool = cognito.UserPool(
            self,
            "EndUsers",
            user_pool_name=f"{environment.name}-end-users",
            self_sign_up_enabled=sign_up.self_sign_up,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            mfa=_MFA[sign_up.mfa],
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False) if sign_up.mfa != "off" else None,
            password_policy=cognito.PasswordPolicy(
                min_length=password.min_length,
                require_lowercase=password.require_lowercase,
                require_uppercase=password.require_uppercase,
                require_digits=password.require_digits,
                require_symbols=password.require_symbols,
                temp_password_validity=durations.days(3),
            ),
            feature_plan=cognito.FeaturePlan.PLUS if threat != "off" else cognito.FeaturePlan.ESSENTIALS,
            standard_threat_protection_mode=_THREAT.get(threat),
            deletion_protection=self.retention.retains,
            removal_policy=self.retention.removal_policy,
        )
        if sign_up.mfa != "required":
            acknowledge(
                pool,
                "AwsSolutions-COG2",
                f"MFA is '{sign_up.mfa}' by this business unit's config (application.sign_up.mfa); "
                "the default and the recommended setting is 'required'",
            )
        if threat != "enforced":
            acknowledge(
                pool,
                "AwsSolutions-COG3",
                f"Threat protection is '{threat}' by this business unit's config "
                "(application.sign_up.threat_protection); the default is 'enforced'",
            )
        return pool

    def _backend(
        self, config: PlatformConfig, environment: EnvironmentSpec, use_case: str
    ) -> PlatformFunction:
        bu = environment.business_unit
        backend = PlatformFunction(
            self,
            "Backend",
            service="app_backend",
            extra_packages=("guardrail", "prompt_catalog"),
            description=f"End-user API of {environment.name}: invoke, ratings, uploads, fine-tunes",
            key=self.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=self.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            memory_size=1024,
            environment={
                # Defaults left out (the same models fill them back in): Lambda allows 4 KB of variables.
                "APP_SETTINGS": self.settings.model_dump_json(exclude_defaults=True),
                "GUARDRAIL_SETTINGS": settings_env(bu.name, bu.guardrails),
                "BUSINESS_UNIT": bu.name,
                "USE_CASE": use_case,
                "TABLE_NAME": self.table.table_name,
                # Ratings and the evaluation candidates made from them (evaluation_datasets is read-only
                # for business units: testers accept candidates into it).
                "FEEDBACK_BUCKET": lake_bucket_name(config, Zone.FEEDBACK),
                "RAW_BUCKET": lake_bucket_name(config, Zone.RAW),
                # The stage: the lake prefix it writes under and the prompt catalog alias it serves (end users
                # cannot pick another alias, issue 16 item 12).
                "LAKE_STAGE": environment.stage.value,
            },
        )
        role = backend.role
        self.table.grant_read_write_data(role)
        grant_lake_access(
            role,
            config,
            LakeAccessRequest(
                business_unit=bu.name,
                stage=LakeScope(environment.stage.value),
                zone=Zone.FEEDBACK,
                access=LakeAccess.WRITE,
            ),
        )
        # SigV4 calls to the shared catalog; its URL is configured after the shared stage is deployed.
        grant_prompt_catalog_invoke(role, config)
        self._grant_models(backend, environment, use_case)
        findings = {
            "Action::kms:GenerateDataKey*": _TABLE_KEY,
            "Action::kms:ReEncrypt*": _TABLE_KEY,
            f"Resource::arn:{Aws.PARTITION}:sagemaker:{environment.region}:{environment.account}:endpoint/{environment.name}-*": (
                "Tenants' personal models are deployed at run time to endpoints named after this environment; "
                "the wildcard stays inside this business unit's and stage's own endpoint names"
            ),
        }
        findings.update({f"Resource::{arn}": _CATALOG for arn in prompt_catalog_invoke_arns(config)})
        acknowledge_findings(role, findings)
        return backend

    def _use_guardrail(self, config: PlatformConfig, guardrail: GuardrailStack) -> None:
        """The stage's guardrail as the business unit packaged it: invoke its function, or run its engine
        here with the same permissions the function has."""
        function, role = self.backend.function, self.backend.role
        if guardrail.settings.packaging == "lambda":
            function.add_environment("GUARDRAIL_FUNCTION", guardrail.function_name)
            guardrail.grant_invoke(role)
            return
        guardrail.grant_runtime_permissions(role)
        function.add_environment("FILTER_DECISIONS_BUCKET", lake_bucket_name(config, Zone.FILTER_DECISIONS))
        if guardrail.bedrock_ref is not None:
            function.add_environment("BEDROCK_GUARDRAIL_ID", guardrail.bedrock_ref[0])
            function.add_environment("BEDROCK_GUARDRAIL_VERSION", guardrail.bedrock_ref[1])

    def _use_fine_tuning(self, fine_tuning: FineTuningStack | None) -> None:
        """POST /fine-tunes starts the stage's pipeline; without one the route answers 503."""
        if fine_tuning is None:
            return
        role = self.backend.role
        self.backend.function.add_environment("FINE_TUNING_PIPELINE", fine_tuning.pipeline_name)
        # The use cases a request may name and the default one, as the upload trigger reads them.
        self.backend.function.add_environment(TenantUseCases.ENV, fine_tuning.tenant_use_cases.to_json())
        if fine_tuning.run_leases is not None:  # the cap's slots, shared with the upload trigger
            self.backend.function.add_environment(
                "FINE_TUNING_LEASES_TABLE", fine_tuning.run_leases.table_name
            )
        if fine_tuning.start_policy is not None:
            role.add_managed_policy(fine_tuning.start_policy)
        self.backend.function.add_environment(
            "MAX_CONCURRENT_RUNS", str(fine_tuning.settings.max_concurrent_runs)
        )
        self.backend.function.add_environment(
            "MAX_RUNTIME_HOURS", str(fine_tuning.settings.max_runtime_hours)
        )
        executions = f"{fine_tuning.pipeline_arn}/execution/*"
        allow(
            role,
            actions=["sagemaker:DescribePipelineExecution", "sagemaker:ListPipelineExecutionSteps"],
            resources=[executions],
        )
        # GET /fine-tunes/{id}: the registered version's approval status (this stage's tenant groups only).
        versions = [
            f"arn:{Aws.PARTITION}:sagemaker:{fine_tuning.region}:{fine_tuning.account}:model-package/{name}/*"
            for name in fine_tuning.tenant_group_names
        ]
        allow(role, actions=["sagemaker:DescribeModelPackage"], resources=versions)
        acknowledge_findings(
            role,
            {
                f"Resource::{executions}": (
                    "Pipeline executions get their ids at run time; GET /fine-tunes/{id} describes executions "
                    "of this stage's one fine-tuning pipeline only"
                ),
                **{
                    f"Resource::{version}": "Tenant model versions are numbered by the registry; the group "
                    "is this stage's tenant group, named exactly"
                    for version in versions
                },
            },
        )

    def _use_model_records(self, serving: ServingStack | None) -> None:
        """/invoke and GET /models read the tenant -> model records the stage's deployer writes."""
        if serving is None:
            return
        self.backend.function.add_environment("MODELS_TABLE", serving.records.table_name)
        allow(
            self.backend.role,
            actions=["dynamodb:GetItem", "dynamodb:Query"],
            resources=[serving.records.table_arn],
        )

    def _grant_models(self, backend: PlatformFunction, environment: EnvironmentSpec, use_case: str) -> None:
        role = backend.role
        model = self.settings.default_model
        region, account = environment.region, environment.account
        key = application_key(environment.business_unit, use_case)
        if key is not None:
            # The default Bedrock model only through this stage's (and use case's) inference profile.
            profile = self.profiles.profile_arn(key.model_id, key.use_case)
            wildcards = self.profiles.grant_invoke(role, key.model_id, key.use_case)
            backend.function.add_environment("DEFAULT_MODEL_PROFILE_ARN", profile)
            acknowledge_findings(
                role,
                {
                    f"Resource::{arn}": (
                        "A cross-region inference profile reaches its one foundation model in the regions it "
                        "routes to; the statement only holds with bedrock:InferenceProfileArn = this stage's profile"
                    )
                    for arn in wildcards
                },
            )
        price = (
            load_price_table().price_of(model.model_id)
            if model.provider == "bedrock" and model.model_id
            else None
        )
        if price is not None:
            backend.function.add_environment("MODEL_PRICE", price.model_dump_json())
        # The BU's endpoint and tenants' personal models: endpoints named after this environment.
        endpoints = [f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:endpoint/{environment.name}-*"]
        if model.endpoint_name:
            endpoints.append(
                f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:endpoint/{model.endpoint_name}"
            )
        allow(role, actions=["sagemaker:InvokeEndpoint"], resources=endpoints)

    def _upload_role(self, config: PlatformConfig, environment: EnvironmentSpec) -> iam.Role:
        """Assumed by the backend once per upload request with the session tag TenantId=<user>."""
        backend_role = self.backend.role
        role = iam.Role(
            self,
            "TenantUploadRole",
            description="Presigned uploads of one tenant: its own raw-zone prefix, chosen by session tag",
            assumed_by=iam.SessionTagsPrincipal(iam.ArnPrincipal(backend_role.role_arn)),
            max_session_duration=durations.hours(1),
        )
        # A session without the TenantId tag would have no prefix to stand on: refuse it outright.
        if role.assume_role_policy is not None:
            role.assume_role_policy.add_statements(
                iam.PolicyStatement(
                    effect=iam.Effect.DENY,
                    principals=[iam.ArnPrincipal(backend_role.role_arn)],
                    actions=["sts:AssumeRole", "sts:TagSession"],
                    conditions={"Null": {"aws:RequestTag/TenantId": "true"}},
                )
            )
            # Only TenantId: a session tag BusinessUnit or Stage would override the role's own tags,
            # which the data lake's fence relies on to keep this stage inside <bu>/<stage>/.
            role.assume_role_policy.add_statements(
                iam.PolicyStatement(
                    effect=iam.Effect.DENY,
                    principals=[iam.ArnPrincipal(backend_role.role_arn)],
                    actions=["sts:TagSession"],
                    conditions={"ForAnyValue:StringNotEquals": {"aws:TagKeys": [TENANT_TAG]}},
                )
            )
        grant_lake_access(
            role, config, upload_request(environment.business_unit.name, environment.stage.value)
        )
        allow(backend_role, actions=["sts:AssumeRole", "sts:TagSession"], resources=[role.role_arn])
        return role

    def _rest_api(self, environment: EnvironmentSpec) -> apigw.RestApi:
        limits = self.settings.limits
        access_logs = encrypted_log_group(
            self,
            "ApiAccessLogs",
            key=self.key,
            retention_days=environment.settings.log_retention_days,
            retention=self.retention,
        )
        authorizer = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[self.user_pool])
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{environment.name}-application",
            description=f"End-user API of {environment.name} (Cognito sign-in)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account-level logging role belongs to the account's baseline (stacks/blocks/api_gateway_account.py).
            cloud_watch_role=False,
            default_method_options=apigw.MethodOptions(
                authorizer=authorizer, authorization_type=apigw.AuthorizationType.COGNITO
            ),
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                tracing_enabled=True,
                throttling_rate_limit=limits.rate_limit,
                throttling_burst_limit=limits.burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies hold end-user text
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        validator = api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        json_object = api.add_model(
            "JsonObject",
            content_type="application/json",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT),
        )
        integration = apigw.LambdaIntegration(self.backend.function, scope_permission_to_method=False)
        for path, methods in ROUTES:
            resource = api.root.resource_for_path(path)
            for method in methods:
                resource.add_method(
                    method,
                    integration,
                    request_validator=validator,
                    request_models={"application/json": json_object} if method == "POST" else None,
                    request_parameters={"method.request.path.id": True} if "{id}" in path else None,
                )
        # No usage plan: its quota applies per API key, which Cognito users do not carry. Per-tenant rates
        # and quotas are enforced by the backend (lambdas/app_backend/quotas.py, application.tenant_limits).
        return api

    def _web_acl(self, environment: EnvironmentSpec) -> wafv2.CfnWebACL:
        name = f"{environment.name}-application"
        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=group,
                priority=index,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=group
                    )
                ),
                visibility_config=_visibility(f"{name}-{group}"),
            )
            for index, group in enumerate(MANAGED_RULE_GROUPS)
        ]
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            rules=rules,
            visibility_config=_visibility(name),
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )
        return acl


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric.replace("-", ""), sampled_requests_enabled=True
    )
