"""EvaluationStack: the state machine contract, exact IAM, the CI gate role, storage and the review queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.app_factory import create_app
from stacks.blocks.nag import add_nag_checks
from stacks.settings import PlatformConfig, Stage, parse_config
from stacks.settings.evaluation import EvaluationSettings
from stacks.stages import BusinessUnitStage
from tests.conftest import REPO_ROOT, SynthesizedPlatform
from tests.stacks.policy_helpers import access_log_group_id

LAKE = "222222222222"
TOOLING = "111111111111"


# ---- template helpers ------------------------------------------------------------------------------


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def only(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = list(resources(template, resource_type).values())
    assert len(found) == 1, (resource_type, len(found))
    return found[0]


def definition(template: dict[str, Any]) -> dict[str, Any]:
    """The state machine's ASL with every token replaced by "TOKEN" (tokens sit inside JSON strings)."""
    body = only(template, "AWS::StepFunctions::StateMachine")["Properties"]["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    asl: dict[str, Any] = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
    return asl


def tasks(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        if state["Type"] == "Map":
            yield from tasks(state["ItemProcessor"]["States"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    """Statements of every inline policy attached to the role whose logical id starts with `role_prefix`."""
    role_ids = [k for k in resources(template, "AWS::IAM::Role") if k.startswith(role_prefix)]
    assert len(role_ids) == 1, (role_prefix, role_ids)
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_ids[0]} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def grants(statements: list[dict[str, Any]], service: str) -> set[tuple[str, str]]:
    """(action, resource) pairs for actions of `service`, resources rendered as JSON for tokens."""
    pairs = set()
    for statement in statements:
        for action in as_list(statement["Action"]):
            if action.startswith(f"{service}:"):
                for resource in as_list(statement["Resource"]):
                    pairs.add((action, resource if isinstance(resource, str) else json.dumps(resource)))
    return pairs


def joined(resource: str) -> str:
    """Fn::Join of a partition-prefixed ARN as synthesized, rendered like `grants` renders it."""
    head, tail = resource.split("<partition>")
    return json.dumps({"Fn::Join": ["", [head, {"Ref": "AWS::Partition"}, tail]]})


# ---- the default config (whole-app session fixture) ------------------------------------------------


@pytest.fixture(scope="module")
def retail_dev(default_platform: SynthesizedPlatform) -> dict[str, Any]:
    return default_platform.template("exco-retail-dev-evaluation")


def test_state_machine_is_named_by_the_contract_and_logs_encrypted_with_tracing(
    default_platform: SynthesizedPlatform, retail_dev: dict[str, Any]
) -> None:
    machine = only(retail_dev, "AWS::StepFunctions::StateMachine")["Properties"]
    assert machine["StateMachineName"] == "exco-retail-dev-evaluation"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    logging = machine["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False
    log_group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert "KmsKeyId" in retail_dev["Resources"][log_group_id]["Properties"]
    names = [
        only(default_platform.template(f"exco-{bu}-{stage}-evaluation"), "AWS::StepFunctions::StateMachine")[
            "Properties"
        ]["StateMachineName"]
        for bu in ("retail", "finance")
        for stage in ("dev", "preprod", "prod")
    ]
    assert len(set(names)) == 6


def test_distributed_map_reads_the_clean_jsonl_dataset_in_batches(
    default_config: PlatformConfig, retail_dev: dict[str, Any]
) -> None:
    settings = default_config.business_unit("retail").evaluation
    score = definition(retail_dev)["States"]["ScoreRecords"]
    assert score["Type"] == "Map"
    assert score["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert score["ItemReader"]["ReaderConfig"] == {"InputType": "JSONL"}
    assert score["ItemReader"]["Resource"] == "arn:TOKEN:states:::s3:getObject"
    assert score["ItemReader"]["Parameters"]["Key.$"] == "$.prepared.dataset.key"
    assert score["ItemBatcher"]["MaxItemsPerBatch"] == settings.batch_size == 20
    assert score["ItemBatcher"]["MaxInputBytesPerBatch"] <= 256 * 1024
    assert score["ItemBatcher"]["BatchInput"] == {
        "run_id.$": "$.prepared.run_id",
        "use_case.$": "$.prepared.use_case",
        "labels.$": "$.prepared.labels",
        "outputs.$": "$.prepared.outputs",
    }
    # concurrency_limit 8 // batch_workers 4: batches x workers stay within the model quota.
    assert score["MaxConcurrency"] == settings.map_max_concurrency == 2
    assert score["ToleratedFailurePercentage"] == settings.gate.max_error_rate * 100 == 5
    assert score["ResultWriter"]["Parameters"]["Prefix"] == "retail/evaluation_runs/map-results"


def test_every_lambda_task_retries_throttling_with_backoff_and_never_retries_client_errors(
    retail_dev: dict[str, Any],
) -> None:
    states = definition(retail_dev)["States"]
    found = dict(tasks(states))
    assert set(found) == {"Prepare", "ScoreBatch", "Summarize", "Gate"}
    for name, task in found.items():
        (retry,) = task["Retry"]
        assert "Lambda.TooManyRequestsException" in retry["ErrorEquals"], name
        assert not {"States.ALL", "InvalidEventError", "DatasetRejectedError"} & set(retry["ErrorEquals"])
        assert (retry["BackoffRate"], retry["JitterStrategy"]) == (2, "FULL")
        assert retry["MaxAttempts"] > 1
        # The figures docs/evaluation-stack.md gives: these four errors, 6 retries from 2 s, at most 2 min.
        assert set(retry["ErrorEquals"]) == {
            "Lambda.TooManyRequestsException",
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
        }, name
        assert (retry["MaxAttempts"], retry["IntervalSeconds"], retry["MaxDelaySeconds"]) == (6, 2, 120)
    for name in ("Prepare", "Summarize", "Gate"):
        assert found[name]["Catch"] == [
            {
                "ErrorEquals": ["InvalidEventError", "DatasetRejectedError"],
                "ResultPath": "$.error",
                "Next": "InputRejected",
            }
        ]
    assert states["InputRejected"]["Type"] == "Fail"


def test_gate_runs_only_when_asked_and_a_failed_gate_fails_the_execution(retail_dev: dict[str, Any]) -> None:
    states = definition(retail_dev)["States"]
    assert states["ApplyDefaults"]["Parameters"]["defaults"] == {
        "gate": False,
        "run_id.$": "$$.Execution.Name",
    }
    assert states["MergeInput"]["Parameters"] == {"args.$": "States.JsonMerge($.defaults, $.input, false)"}
    assert states["Prepare"]["InputPath"] == "$.args"
    assert states["GateRequested"]["Choices"] == [
        {"Variable": "$.args.gate", "BooleanEquals": True, "Next": "AwaitingHumanReview"}
    ]
    assert states["GateRequested"]["Default"] == "Done"
    # A run with a per-run candidate waits for its open human review; every other gate run goes on at once.
    assert states["AwaitingHumanReview"]["Choices"] == [
        {
            "Or": [
                {"Variable": "$.args.candidate", "IsPresent": False},
                {"Variable": "$.summary.review_open", "BooleanEquals": False},
            ],
            "Next": "Gate",
        }
    ]
    assert states["AwaitingHumanReview"]["Default"] == "WaitForHumanReview"
    assert states["WaitForHumanReview"] == {"Type": "Wait", "Seconds": 900, "Next": "Summarize"}
    assert states["GateDecision"]["Choices"] == [
        {"Variable": "$.gate.passed", "BooleanEquals": True, "Next": "GatePassed"}
    ]
    assert states["GateDecision"]["Default"] == "GateFailed"
    assert states["GateFailed"] == {
        "Type": "Fail",
        "Error": "EvaluationGateFailed",
        "CausePath": "States.JsonToString($.gate)",
    }
    assert states["GatePassed"] == {"Type": "Succeed", "OutputPath": "$.gate"}


def test_gate_role_exists_in_preprod_only_and_trusts_only_the_pipelines_gate_caller(
    default_platform: SynthesizedPlatform,
) -> None:
    for stage in ("dev", "prod"):
        template = default_platform.template(f"exco-retail-{stage}-evaluation")
        names = [r["Properties"].get("RoleName") for r in resources(template, "AWS::IAM::Role").values()]
        assert "exco-retail-dev-evaluation-gate" not in names and not any(n for n in names if n)
    template = default_platform.template("exco-retail-preprod-evaluation")
    role = next(r for r in resources(template, "AWS::IAM::Role").values() if r["Properties"].get("RoleName"))[
        "Properties"
    ]
    assert role["RoleName"] == "exco-retail-preprod-evaluation-gate"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": json.loads(joined(f"arn:<partition>:iam::{TOOLING}:root"))}
    caller = f"arn:<partition>:iam::{TOOLING}:role/exco-pipeline-retail-preprod-gate-caller"
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": json.loads(joined(caller))}}
    statements = role_statements(template, "GateRole")
    assert grants(statements, "states") == {
        (
            "states:StartExecution",
            json.dumps({"Ref": next(iter(resources(template, "AWS::StepFunctions::StateMachine")))}),
        ),
        (
            "states:DescribeExecution",
            joined(
                "arn:<partition>:states:eu-west-1:333333333332:execution:exco-retail-preprod-evaluation:*"
            ),
        ),
    }
    assert {a for s in statements for a in as_list(s["Action"])} == {
        "states:StartExecution",
        "states:DescribeExecution",
    }


def test_default_candidates_grant_no_model_access(default_platform: SynthesizedPlatform) -> None:
    # retail configures no candidates and no judge (finance's judge is checked in tests/stacks/test_model_usage.py).
    for stack, template in default_platform.templates():
        if stack.stack_name.endswith("-evaluation") and "-retail-" in stack.stack_name:
            for policy in resources(template, "AWS::IAM::Policy").values():
                statements = policy["Properties"]["PolicyDocument"]["Statement"]
                # Preprod's business-unit gate calls the version its deployer served: exactly that endpoint;
                # its recorder describes and updates the business unit's versions (no model invocation).
                if "GateRecorder" in json.dumps(policy["Properties"]["Roles"]):
                    assert not grants(statements, "bedrock")
                    assert {a for a, _ in grants(statements, "sagemaker")} == {
                        "sagemaker:DescribeModelPackage",
                        "sagemaker:UpdateModelPackage",
                    }
                    continue
                served = [st for st in statements if st.get("Sid") == "InvokeServedCandidates"]
                assert not served or "-preprod-" in stack.stack_name
                assert {r for _, r in grants(served, "sagemaker")} <= {
                    joined(f"arn:<partition>:sagemaker:eu-west-1:333333333332:{kind}")
                    for kind in (
                        "endpoint/exco-retail-preprod-serving",
                        "inference-component/exco-retail-preprod-serving-*",
                    )
                }
                others = [st for st in statements if st not in served]
                models = grants(others, "bedrock") | grants(others, "sagemaker")
                # Deciding tenant versions (review API, tests/journeys) is registry access, not model access.
                decisions = {
                    (action, resource)
                    for action, resource in models
                    if action in ("sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage")
                    and "-tenants-" in resource
                }
                assert not models - decisions, stack.stack_name


def test_lake_access_is_per_step_and_limited_to_the_business_unit_prefix(retail_dev: dict[str, Any]) -> None:
    # Datasets: the business unit's shared, curated prefix; results: this stage's own prefix.
    datasets = joined(f"arn:<partition>:s3:::exco-lake-evaluation-datasets-{LAKE}-eu-west-1/retail/shared/*")
    results = joined(f"arn:<partition>:s3:::exco-lake-evaluation-results-{LAKE}-eu-west-1/retail/dev/*")
    for role in ("PrepareFunction", "ScoreBatchFunction"):
        s3 = grants(role_statements(retail_dev, role), "s3")
        assert ("s3:GetObject", datasets) in s3
        assert not {
            pair for pair in s3 if pair[1] == results or (pair[0] == "s3:PutObject" and pair[1] == datasets)
        }
    summarize = role_statements(retail_dev, "SummarizeFunction")
    assert ("s3:PutObject", results) in grants(summarize, "s3")
    assert not {pair for pair in grants(summarize, "s3") if "datasets" in pair[1]}
    lake_key = next(
        s
        for s in summarize
        if "kms:GenerateDataKey" in as_list(s["Action"]) and "222222222222" in json.dumps(s)
    )
    assert lake_key["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"},
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/exco/data-lake"]},
    }
    gate = role_statements(retail_dev, "GateFunction")
    assert {a for s in gate for a in as_list(s["Action"])} == {
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:ListBucket",
        "kms:Decrypt",
    }
    assert tuple(a for s in summarize for a in as_list(s["Action"]) if a.startswith("sqs:")) == (
        "sqs:SendMessage",
    )


def test_functions_get_their_settings_and_buckets_from_the_environment(
    default_config: PlatformConfig, retail_dev: dict[str, Any]
) -> None:
    functions = {
        k: r["Properties"]
        for k, r in resources(retail_dev, "AWS::Lambda::Function").items()
        if "Function" in k and not k.startswith("ReviewApi")
    }
    handlers = {p["Handler"] for p in functions.values()}
    assert handlers == {
        f"evaluation.handler.{h}" for h in ("prepare", "score_batch", "summarize", "gate", "complete_reviews")
    }
    for props in functions.values():
        variables = props["Environment"]["Variables"]
        assert EvaluationSettings.model_validate_json(variables["EVALUATION_SETTINGS"]) == (
            default_config.business_unit("retail").evaluation
        )
        assert variables["BUSINESS_UNIT"] == "retail"
        assert "KmsKeyArn" in props
        assert props["TracingConfig"] == {"Mode": "Active"}
    summarize = next(p for p in functions.values() if p["Handler"].endswith("summarize"))["Environment"][
        "Variables"
    ]
    assert summarize["LAKE_RESULTS_BUCKET"] == f"exco-lake-evaluation-results-{LAKE}-eu-west-1"
    assert "REVIEW_QUEUE_URL" in summarize


def test_review_queue_is_encrypted_tls_only_with_a_dead_letter_queue(retail_dev: dict[str, Any]) -> None:
    queues = resources(retail_dev, "AWS::SQS::Queue")
    assert len(queues) == 2
    assert all("KmsMasterKeyId" in q["Properties"] for q in queues.values())
    (main,) = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert main["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5
    denies = [
        s
        for p in resources(retail_dev, "AWS::SQS::QueuePolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
    ]
    assert len(denies) == 2
    assert all(d["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for d in denies)


def test_run_bucket_uses_the_baseline_key_and_access_logs(retail_dev: dict[str, Any]) -> None:
    bucket = only(retail_dev, "AWS::S3::Bucket")["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "Fn::ImportValue" in rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    assert "Fn::ImportValue" in bucket["LoggingConfiguration"]["DestinationBucketName"]


# ---- a config with candidates: one business unit stage, synthesized once for this module --------------


CANDIDATES = {
    "candidates": [
        {"name": "haiku", "provider": "bedrock", "model_id": "anthropic.claude-3-haiku-20240307-v1:0"},
        {"name": "nova", "provider": "bedrock", "model_id": "eu.amazon.nova-lite-v1:0"},
        {"name": "tuned", "provider": "sagemaker", "endpoint_name": "Retail-MME", "target_model": "a.tar.gz"},
    ],
    "judge": {
        "model": {"name": "judge", "provider": "bedrock", "model_id": "mistral.mistral-large-2402-v1:0"}
    },
    "concurrency_limit": 30,
    "batch_workers": 4,
    "batch_size": 50,
}


@pytest.fixture(scope="module")
def with_candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    raw = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
    raw["business_units"][0]["evaluation"] = CANDIDATES
    config = parse_config(raw)
    app = create_app(outdir=str(tmp_path_factory.mktemp("evaluation-candidates")))
    environment = config.environment(config.business_unit("retail"), Stage.PREPROD)
    BusinessUnitStage(app, "retail-preprod", config=config, environment=environment)
    add_nag_checks(app)
    assembly = app.synth()  # raises on any unacknowledged cdk-nag finding, e.g. the model ARNs
    (stack,) = [s for s in assembly.stacks_recursively if s.stack_name == "exco-retail-preprod-evaluation"]
    template: dict[str, Any] = stack.template
    assert Path(stack.template_full_path).is_file()
    return template


def test_score_batch_may_invoke_exactly_the_configured_models(with_candidates: dict[str, Any]) -> None:
    account = "333333333332"
    statements = role_statements(with_candidates, "ScoreBatchFunction")
    # Each Bedrock model through the stage's application inference profile (docs/cost.md): the three
    # profiles unconditionally, the models they route to only on the condition naming their profile.
    profiles = [
        s for s in statements if "bedrock:InvokeModel" in as_list(s["Action"]) and "Condition" not in s
    ]
    routed = [s for s in statements if "bedrock:InvokeModel" in as_list(s["Action"]) and "Condition" in s]
    imported = [r["Fn::ImportValue"] for s in profiles for r in as_list(s["Resource"])]
    assert len(imported) == 3 and all("-model-profiles:" in name for name in imported)
    assert {
        s["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]["Fn::ImportValue"] for s in routed
    } == set(imported)
    assert grants(routed, "bedrock") == {
        ("bedrock:InvokeModel", r)
        for r in (
            joined(
                "arn:<partition>:bedrock:eu-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
            ),
            joined(f"arn:<partition>:bedrock:eu-west-1:{account}:inference-profile/eu.amazon.nova-lite-v1:0"),
            joined("arn:<partition>:bedrock:*::foundation-model/amazon.nova-lite-v1:0"),
            joined("arn:<partition>:bedrock:eu-west-1::foundation-model/mistral.mistral-large-2402-v1:0"),
        )
    }
    assert grants(role_statements(with_candidates, "ScoreBatchFunction"), "sagemaker") == {
        (
            "sagemaker:InvokeEndpoint",
            joined(f"arn:<partition>:sagemaker:eu-west-1:{account}:endpoint/retail-mme"),
        ),
        # The business-unit gate's per-run candidate: the version this stage's deployer served.
        (
            "sagemaker:InvokeEndpoint",
            joined(f"arn:<partition>:sagemaker:eu-west-1:{account}:endpoint/exco-retail-preprod-serving"),
        ),
        (
            "sagemaker:InvokeEndpoint",
            joined(
                f"arn:<partition>:sagemaker:eu-west-1:{account}:inference-component/exco-retail-preprod-serving-*"
            ),
        ),
    }
    for role in ("PrepareFunction", "SummarizeFunction", "GateFunction", "StateMachineRole"):
        statements = role_statements(with_candidates, role)
        assert not grants(statements, "bedrock") | grants(statements, "sagemaker"), role


def test_map_concurrency_and_batch_size_follow_the_config(with_candidates: dict[str, Any]) -> None:
    score = definition(with_candidates)["States"]["ScoreRecords"]
    assert score["MaxConcurrency"] == 30 // 4
    assert score["ItemBatcher"]["MaxItemsPerBatch"] == 50


# ---- human review API ------------------------------------------------------------------------------


def test_review_api_is_iam_only_throttled_traced_and_access_logged(retail_dev: dict[str, Any]) -> None:
    api = only(retail_dev, "AWS::ApiGateway::RestApi")["Properties"]
    assert api["Name"] == "exco-retail-dev-evaluation-review"
    (statement,) = api["Policy"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke" and statement["Effect"] == "Allow"
    methods = resources(retail_dev, "AWS::ApiGateway::Method")
    # GET /reviews/next, POST /reviews, GET /candidates, POST /datasets/{name}/accept
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == ["GET", "GET", "POST", "POST"]
    assert all(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in methods.values())
    assert not resources(retail_dev, "AWS::ApiGateway::Account")  # the application stack owns it
    stage = only(retail_dev, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["TracingEnabled"] is True
    (settings,) = stage["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (10, 20)
    assert settings["DataTraceEnabled"] is False
    log_group_id = access_log_group_id(stage["AccessLogSetting"]["DestinationArn"])
    assert "KmsKeyId" in retail_dev["Resources"][log_group_id]["Properties"]
    assert "$context.identity.user" in stage["AccessLogSetting"]["Format"]


def test_review_api_function_takes_answers_and_writes_only_reviews(retail_dev: dict[str, Any]) -> None:
    (function,) = [
        r["Properties"]
        for k, r in resources(retail_dev, "AWS::Lambda::Function").items()
        if k.startswith("ReviewApiFunction")
    ]
    assert function["Handler"] == "evaluation.handler.review_api"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert {"RESULTS_BUCKET", "BUSINESS_UNIT", "REVIEW_QUEUE_URL"} <= set(
        function["Environment"]["Variables"]
    )
    statements = role_statements(retail_dev, "ReviewApiFunction")
    queue_id = next(
        k for k, q in resources(retail_dev, "AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"]
    )
    queue_arn = json.dumps({"Fn::GetAtt": [queue_id, "Arn"]})
    assert grants(statements, "sqs") == {
        (a, queue_arn) for a in ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage")
    }
    s3_grants = grants(statements, "s3")
    writes = {r for a, r in s3_grants if a == "s3:PutObject"}
    assert {a for a, _ in s3_grants} == {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}
    reviews = [r for r in writes if r.endswith('/retail/evaluation_runs/*/reviews/*"]]}')]
    claims = [r for r in writes if r.endswith('/retail/evaluation_runs/_claims/*"]]}')]
    accepted = [r for r in writes if r.endswith('/retail/evaluation_runs/_accepted/*"]]}')]
    assert len(reviews) == 1 and len(claims) == 1 and len(accepted) == 1 and len(writes) == 3
    # Claims (issue 16 item 9) are the only objects the function deletes.
    assert {r for a, r in s3_grants if a == "s3:DeleteObject"} == set(claims)
    reads = {r for a, r in s3_grants if a == "s3:GetObject"}
    assert set(claims) | set(accepted) <= reads
    assert any(r.endswith('/retail/evaluation_runs/*/dataset.jsonl"]]}') for r in reads)  # flagged answers
    assert any("/retail/dev/evaluation_candidates/*" in r for r in reads)  # this stage's rating candidates


# ---- catalog prompts, human review completion (issue 14) ------------------------------------------


def test_prepare_may_read_exactly_the_catalogs_prompt_version_and_alias_routes(
    retail_dev: dict[str, Any],
) -> None:
    invoke = grants(role_statements(retail_dev, "PrepareFunction"), "execute-api")
    base = f"arn:aws:execute-api:eu-west-1:{TOOLING}:*/prompt-catalog"
    assert invoke == {
        ("execute-api:Invoke", f"{base}/GET/prompts/*/versions/*"),
        ("execute-api:Invoke", f"{base}/GET/prompts/*/aliases/*"),
    }
    for entry in ("ScoreBatchFunction", "SummarizeFunction", "GateFunction", "CompleteReviewsFunction"):
        assert grants(role_statements(retail_dev, entry), "execute-api") == set(), entry
    accept = grants(role_statements(retail_dev, "ReviewApiFunction"), "execute-api")
    assert accept == {("execute-api:Invoke", f"{base}/POST/datasets/*/records")}


def test_complete_reviews_runs_every_15_minutes_and_may_only_close_runs(retail_dev: dict[str, Any]) -> None:
    (function_id,) = [
        k for k in resources(retail_dev, "AWS::Lambda::Function") if k.startswith("CompleteReviews")
    ]
    function = retail_dev["Resources"][function_id]["Properties"]
    assert function["Handler"] == "evaluation.handler.complete_reviews"
    assert function["Environment"]["Variables"]["LAKE_RESULTS_BUCKET"] == (
        f"exco-lake-evaluation-results-{LAKE}-eu-west-1"
    )
    rules = [
        r["Properties"]
        for r in resources(retail_dev, "AWS::Events::Rule").values()
        if any(t["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]} for t in r["Properties"].get("Targets", []))
    ]
    assert [r["ScheduleExpression"] for r in rules] == ["rate(15 minutes)"]
    statements = role_statements(retail_dev, "CompleteReviewsFunction")
    deletes = {r for a, r in grants(statements, "s3") if a == "s3:DeleteObject"}
    assert len(deletes) == 1 and next(iter(deletes)).endswith('/retail/evaluation_runs/_open_reviews/*"]]}')
    assert grants(statements, "sqs") == set()


def test_a_gate_run_may_wait_for_its_human_review_until_the_deadline() -> None:
    from stacks.evaluation_stack import state_machine_timeout_hours

    assert state_machine_timeout_hours(EvaluationSettings()) == 24
    assert state_machine_timeout_hours(EvaluationSettings(human_review={"enabled": True})) == 73
    assert (
        state_machine_timeout_hours(EvaluationSettings(human_review={"enabled": True, "deadline_hours": 2}))
        == 24
    )
