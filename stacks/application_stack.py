"""The business unit's end-user API: Cognito, API Gateway (Cognito authorizer), WAF, the backend function,
its table, and the tenant-scoped upload role (ABAC on the raw zone prefix)."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from common.lake_layout import Zone, business_unit_prefix
from stacks.application_lake_access import (
    grant_lake_access,
    lake_bucket_name,
    lake_key_arn_pattern,
    lake_key_condition,
)
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest
from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.nag import acknowledge
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.retention import retention_for
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.application import ApplicationSettings

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
_LAKE_KEY = (
    "The lake key lives in the data lake account and its id is unknown here at synth time; key/* is "
    "narrowed to the key carrying the lake alias (kms:ResourceAliases) and to calls made through S3"
)
_OWN_PREFIX = (
    "Object keys under the business unit's own lake prefix are created at run time; the wildcard ends "
    "in '<business_unit>/' and so never reaches another business unit's prefix"
)


def nag_name(value: str) -> str:
    """How cdk-nag prints a resource: pseudo parameters and IAM policy variables in angle brackets."""
    return value.replace(Aws.PARTITION, "<AWS::Partition>").replace(
        "${aws:PrincipalTag/TenantId}", "<aws:PrincipalTag/TenantId>"
    )


def acknowledge_findings(construct: Construct, findings: dict[str, str]) -> None:
    for finding, reason in findings.items():
        acknowledge(construct, f"AwsSolutions-IAM5[{nag_name(finding)}]", reason)


def waf_enabled(environment: EnvironmentSpec, settings: ApplicationSettings) -> bool:
    return environment.stage is not Stage.DEV or settings.waf_in_dev


def upload_prefix_pattern(business_unit: str) -> str:
    """The raw-zone prefix a tagged upload session may touch: resolved by IAM per session."""
    return f"{business_unit_prefix(business_unit)}tenant=${{aws:PrincipalTag/TenantId}}/uploads/"


def upload_policy_statements(config: PlatformConfig, business_unit: str) -> list[dict[str, object]]:
    """What a session tagged TenantId=<t> may do: its own uploads prefix in the raw zone, nothing else."""
    bucket_arn = f"arn:{Aws.PARTITION}:s3:::{lake_bucket_name(config, Zone.RAW)}"
    prefix = upload_prefix_pattern(business_unit)
    return [
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{bucket_arn}/{prefix}*"]},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": [lake_key_arn_pattern(config)],
            "Condition": lake_key_condition(config),
        },
    ]


class ApplicationStack(PlatformStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        key: kms.IKey,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{environment.name}-application",
            account=environment.account,
            region=environment.region,
            description=f"LLMOps application backend for {environment.name}: Cognito, REST API, WAF, backend",
        )
        bu = environment.business_unit
        self.settings = bu.application
        use_case = self.settings.use_case or bu.use_cases[0]
        if use_case not in bu.use_cases:
            raise ValueError(
                f"business_units[{bu.name}].application.use_case: {use_case!r} is not one of {bu.use_cases}"
            )
        self.environment_spec = environment
        self.retention = retention_for(environment.stage)
        self.key = key
        self.user_pool = self._user_pool(environment)
        self.client = self.user_pool.add_client(
            "WebClient",
            auth_flows=cognito.AuthFlow(user_srp=True),
            generate_secret=False,
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
        )
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
        self.upload_role = self._upload_role(config, environment)
        self.backend.function.add_environment("UPLOAD_ROLE_ARN", self.upload_role.role_arn)
        self.api = self._rest_api(environment)
        if waf_enabled(environment, self.settings):
            self.web_acl = self._web_acl(environment)
        else:
            acknowledge(
                self.api.deployment_stage,
                "AwsSolutions-APIG3",
                "Dev stage without WAF by config (application.waf_in_dev: false) to save its monthly cost; "
                "the Cognito authorizer and stage throttling still guard every method",
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
                temp_password_validity=Duration.days(3),
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
        bu = environment.business_unit.name
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
                "APP_SETTINGS": self.settings.model_dump_json(),
                "BUSINESS_UNIT": bu,
                "USE_CASE": use_case,
                "TABLE_NAME": self.table.table_name,
                "FEEDBACK_BUCKET": lake_bucket_name(config, Zone.FEEDBACK),
                "EVALUATION_DATASETS_BUCKET": lake_bucket_name(config, Zone.EVALUATION_DATASETS),
                "FILTER_DECISIONS_BUCKET": lake_bucket_name(config, Zone.FILTER_DECISIONS),
                "RAW_BUCKET": lake_bucket_name(config, Zone.RAW),
                "GUARDRAIL_SETTINGS": "{}",
            },
        )
        role = backend.role
        self.table.grant_read_write_data(role)
        for zone in (Zone.FEEDBACK, Zone.EVALUATION_DATASETS, Zone.FILTER_DECISIONS):
            grant_lake_access(
                role, config, LakeAccessRequest(business_unit=bu, zone=zone, access=LakeAccess.WRITE)
            )
        # The in-process guardrail's Comprehend layers: these Detect* actions have no resource scope.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["comprehend:DetectPiiEntities", "comprehend:DetectToxicContent"], resources=["*"]
            )
        )
        self._grant_models(role, config, environment)
        bucket = f"arn:{Aws.PARTITION}:s3:::"
        findings = {
            "Action::kms:GenerateDataKey*": _TABLE_KEY,
            "Action::kms:ReEncrypt*": _TABLE_KEY,
            f"Resource::{lake_key_arn_pattern(config)}": _LAKE_KEY,
            f"Resource::arn:{Aws.PARTITION}:execute-api:{config.home_region}:{config.tooling_account}:*/*/GET/*": (
                "The prompt catalog API lives in the tooling account and its id is not known here at synth "
                "time; the grant is limited to GET routes (reads) of that one account and region"
            ),
            f"Resource::arn:{Aws.PARTITION}:sagemaker:{environment.region}:{environment.account}:endpoint/{environment.name}-*": (
                "Tenants' personal models are deployed at run time to endpoints named after this environment; "
                "the wildcard stays inside this business unit's and stage's own endpoint names"
            ),
        }
        for zone in (Zone.FEEDBACK, Zone.EVALUATION_DATASETS, Zone.FILTER_DECISIONS):
            findings[f"Resource::{bucket}{lake_bucket_name(config, zone)}/{bu}/*"] = _OWN_PREFIX
        acknowledge_findings(role, findings)
        return backend

    def _grant_models(self, role: iam.IRole, config: PlatformConfig, environment: EnvironmentSpec) -> None:
        model = self.settings.default_model
        region, account = environment.region, environment.account
        if model.provider == "bedrock":
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["bedrock:InvokeModel"],
                    resources=[
                        f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{model.model_id}",
                        f"arn:{Aws.PARTITION}:bedrock:{region}:{account}:inference-profile/{model.model_id}",
                    ],
                )
            )
        # The BU's endpoint and tenants' personal models: endpoints named after this environment.
        endpoints = [f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:endpoint/{environment.name}-*"]
        if model.endpoint_name:
            endpoints.append(
                f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:endpoint/{model.endpoint_name}"
            )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=endpoints)
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[
                    f"arn:{Aws.PARTITION}:execute-api:{config.home_region}:{config.tooling_account}:*/*/GET/*"
                ],
            )
        )
        pipeline = self.settings.fine_tuning_pipeline
        if pipeline:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["sagemaker:StartPipelineExecution"],
                    resources=[
                        f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:pipeline/{pipeline.lower()}"
                    ],
                )
            )
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["sagemaker:DescribePipelineExecution"],
                    resources=[
                        f"arn:{Aws.PARTITION}:sagemaker:{region}:{account}:pipeline/{pipeline.lower()}/execution/*"
                    ],
                )
            )

    def _upload_role(self, config: PlatformConfig, environment: EnvironmentSpec) -> iam.Role:
        """Assumed by the backend once per upload request with the session tag TenantId=<user>."""
        backend_role = self.backend.role
        role = iam.Role(
            self,
            "TenantUploadRole",
            description="Presigned uploads of one tenant: its own raw-zone prefix, chosen by session tag",
            assumed_by=iam.SessionTagsPrincipal(iam.ArnPrincipal(backend_role.role_arn)),
            max_session_duration=Duration.hours(1),
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
        for statement in upload_policy_statements(config, environment.business_unit.name):
            role.add_to_policy(iam.PolicyStatement.from_json(statement))
        backend_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sts:AssumeRole", "sts:TagSession"], resources=[role.role_arn])
        )
        raw_objects = f"arn:{Aws.PARTITION}:s3:::{lake_bucket_name(config, Zone.RAW)}/"
        acknowledge_findings(
            role,
            {
                f"Resource::{raw_objects}{upload_prefix_pattern(environment.business_unit.name)}*": (
                    "Upload keys are created at run time under the tenant's own prefix; the tenant segment is "
                    "the session tag ${aws:PrincipalTag/TenantId}, so one session reaches one tenant only"
                ),
                f"Resource::{lake_key_arn_pattern(config)}": _LAKE_KEY,
            },
        )
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
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=self.retention.removal_policy,
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
        api.add_usage_plan(
            "UsagePlan",
            name=f"{environment.name}-application",
            throttle=apigw.ThrottleSettings(rate_limit=limits.rate_limit, burst_limit=limits.burst_limit),
            quota=apigw.QuotaSettings(limit=limits.daily_quota, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)],
        )
        acknowledge(
            api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level role API Gateway uses to write execution logs of every REST API in the account "
            "and region; this AWS policy is the documented scope for it",
        )
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
