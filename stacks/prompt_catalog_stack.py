"""The shared prompt catalog service in the tooling account: table, bucket, function, IAM-authorized REST API.

Table keys, routes and environment follow docs/prompt-catalog.md; who may call is decided in
stacks/blocks/prompt_catalog_access.py.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common.lake_layout import Zone
from stacks.blocks import durations
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.grants import allow
from stacks.blocks.lake_access import dataset_promotion_role_name, grant_dataset_promotion, lake_bucket_name
from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.nag import acknowledge, acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.prompt_catalog_access import (
    API_STAGE,
    KINDS,
    alias_movers,
    api_client_accounts,
    caller_business_units,
    catalog_stack_name,
)
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import SecureBucket
from stacks.settings import PlatformConfig, Stage

GSI = "gsi1"
# (path below /<kind>, methods); the handler routes the same paths (lambdas/prompt_catalog/handler.py).
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("GET", "POST")),
    ("{name}", ("GET",)),
    ("{name}/versions", ("POST",)),
    ("{name}/versions/{version}", ("GET",)),
    ("{name}/aliases/{alias}", ("GET", "PUT")),
    ("{name}/archive", ("POST",)),
    ("{name}/render", ("POST",)),
)
# One JSON line per request: who (the caller's ARN, as the function sees it), what, and how it went.
ACCESS_LOG_FORMAT = apigw.AccessLogFormat.custom(
    json.dumps(
        {
            "requestId": apigw.AccessLogField.context_request_id(),
            "requestTime": apigw.AccessLogField.context_request_time(),
            "userArn": apigw.AccessLogField.context_identity_user_arn(),
            "sourceIp": apigw.AccessLogField.context_identity_source_ip(),
            "httpMethod": apigw.AccessLogField.context_http_method(),
            "resourcePath": apigw.AccessLogField.context_resource_path(),
            "path": apigw.AccessLogField.context_path(),
            "status": apigw.AccessLogField.context_status(),
            "responseLength": apigw.AccessLogField.context_response_length(),
            "integrationLatency": apigw.AccessLogField.context_integration_latency(),
            "xrayTraceId": apigw.AccessLogField.context_xray_trace_id(),
        }
    )
)


class PromptCatalogStack(PlatformStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, access_logs: s3.IBucket
    ) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=catalog_stack_name(config),
            account=config.tooling_account,
            region=config.home_region,
            description="LLMOps prompt catalog: versioned prompts, chains and evaluation datasets behind an IAM-authorized API",
        )
        settings = config.prompt_catalog
        self.retention = retention_for(None)
        # Its own key: the tooling artifact key is meant to be shared with pipelines and business unit
        # accounts, while catalog data is read only through the function.
        self.key = PlatformKey(
            self, "CatalogKey", alias=f"alias/{prefix}/prompt-catalog", retention=self.retention
        ).key
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=self.retention.retains,
            removal_policy=self.retention.removal_policy,
        )
        self.table.add_global_secondary_index(
            index_name=GSI,
            partition_key=dynamodb.Attribute(name="gsi1pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="gsi1sk", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Large version bodies and evaluation datasets; keys never collide (`.json` bodies, `.jsonl` datasets).
        self.bucket = SecureBucket(
            self, "CatalogData", key=self.key, access_logs=access_logs, retention=self.retention
        )
        callers = caller_business_units(config)
        self.handler = PlatformFunction(
            self,
            "Api",
            service="prompt_catalog",
            description="Prompt catalog API: prompts, chains, evaluation datasets per business unit",
            key=self.key,
            # Shared stacks keep their logs as long as production does.
            log_retention_days=config.stages.of(Stage.PROD).log_retention_days,
            retention=self.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            environment={
                "TABLE_NAME": self.table.table_name,
                "BODY_BUCKET": self.bucket.bucket_name,
                # The one home of evaluation datasets: the lake's evaluation_datasets zone (_grant_dataset_home).
                "DATASET_BUCKET": lake_bucket_name(config, Zone.EVALUATION_DATASETS),
                "PROMPT_CATALOG_SETTINGS": settings.runtime().model_dump_json(),
                "CALLER_BUSINESS_UNITS": json.dumps(callers, sort_keys=True),
                # Stage aliases move only by the stage's release role (stacks/blocks/prompt_catalog_access.py).
                "ALIAS_MOVERS": json.dumps(alias_movers(config), sort_keys=True, separators=(",", ":")),
            },
        )
        self._grant_data_access(sorted(callers))
        self._grant_dataset_home(config, sorted(callers))
        self.api = self._rest_api(config)
        self.api_url = self.api.url_for_path("/")
        CfnOutput(self, "ApiUrl", value=self.api_url, description="Base URL of the prompt catalog API")
        acknowledge_cdk_managed_providers(self)

    def _grant_data_access(self, business_units: list[str]) -> None:
        """Exactly the calls repository.py makes, on the table, its index, the units' prefixes and the key."""
        role = self.handler.role
        allow(
            role,
            actions=[
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:ConditionCheckItem",
            ],
            resources=[self.table.table_arn, f"{self.table.table_arn}/index/{GSI}"],
        )
        allow(
            role,
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"{bu}/*") for bu in business_units],
        )
        bucket_id = self.resolve(self.get_logical_id(self.bucket.node.default_child))  # type: ignore[arg-type]
        for bu in business_units:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{bu}/*]",
                f"Objects of business unit {bu} are content-addressed under '{bu}/' (sha256 names the "
                "function computes); the function enforces the caller's unit before it reads or writes",
            )
        allow(
            role,
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=[self.key.key_arn],
        )

    def _grant_dataset_home(self, config: PlatformConfig, business_units: list[str]) -> None:
        """Dataset versions go to `<bu>/shared/datasets/` of the lake's evaluation_datasets zone through the
        one identity the lake lets write `<bu>/shared/`: the dataset promotion role, which only this
        function may assume (handler: DATASET_WRITER_ROLE_ARN). The catalog records who accepted what."""
        promotion = iam.Role(
            self,
            "DatasetPromotion",
            role_name=dataset_promotion_role_name(config),
            description="Writes evaluation dataset versions to <bu>/shared/ of the lake (prompt catalog only)",
            assumed_by=iam.ArnPrincipal(self.handler.role.role_arn),
            max_session_duration=durations.hours(1),
        )
        grant_dataset_promotion(promotion, config)
        self.handler.function.add_environment("DATASET_WRITER_ROLE_ARN", promotion.role_arn)
        allow(self.handler.role, actions=["sts:AssumeRole"], resources=[promotion.role_arn])
        self.dataset_promotion_role = promotion

    def _rest_api(self, config: PlatformConfig) -> apigw.RestApi:
        access_log_group = encrypted_log_group(
            self,
            "ApiAccessLogs",
            key=self.key,
            retention_days=config.stages.of(Stage.PROD).log_retention_days,
            retention=self.retention,
        )
        settings = config.prompt_catalog
        api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{config.organization.prefix}-prompt-catalog",
            description="Prompt catalog: IAM-authorized, callers from the business unit accounts",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account-level logging role belongs to the account's baseline (stacks/blocks/api_gateway_account.py).
            cloud_watch_role=False,
            policy=iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="BusinessUnitAccounts",
                        principals=[iam.AccountPrincipal(a) for a in api_client_accounts(config)],
                        actions=["execute-api:Invoke"],
                        resources=["execute-api:/*"],
                    )
                ]
            ),
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                tracing_enabled=True,
                throttling_rate_limit=settings.api_rate_limit,
                throttling_burst_limit=settings.api_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                # Request and response bodies hold prompts and datasets: keep them out of execution logs.
                data_trace_enabled=False,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_log_group),
                access_log_format=ACCESS_LOG_FORMAT,
            ),
        )
        validator = api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        # One API-wide Lambda permission instead of two per method (the function policy has a 20 KB limit).
        integration = apigw.LambdaIntegration(self.handler.function, scope_permission_to_method=False)
        for kind in KINDS:
            collection = api.root.add_resource(kind)
            for path, methods in ROUTES:
                resource = collection.resource_for_path(path) if path else collection
                for method in methods:
                    resource.add_method(
                        method,
                        integration,
                        request_validator=validator,
                        request_parameters={
                            f"method.request.path.{p.strip('{}')}": True
                            for p in path.split("/")
                            if p.startswith("{")
                        }
                        or None,
                    )
        self._acknowledge_api_findings(api)
        return api

    @staticmethod
    def _acknowledge_api_findings(api: apigw.RestApi) -> None:
        acknowledge(
            api,
            "AwsSolutions-COG4",
            "Callers are IAM roles of business unit accounts and pipelines, not end users: every method "
            "requires SigV4 (AWS_IAM) and the resource policy admits only the platform's accounts",
        )
        acknowledge(
            api.deployment_stage,
            "AwsSolutions-APIG3",
            "Every method requires SigV4 from the platform's accounts, so unsigned traffic is refused "
            "before the integration; the stage throttles per second and in bursts (prompt_catalog settings)",
        )
