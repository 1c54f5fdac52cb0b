"""Helpers for the consumer journey: the prompt catalog API in-process, template lookups, a state walker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSRequest


class InProcessCatalog:
    """API Gateway in front of the real catalog handler: checks the SigV4 signature is there, passes the
    caller's ARN (set per hop in `caller`) as the IAM identity, returns (status, body) like urllib."""

    def __init__(self, handler: Any, stage: str) -> None:
        self.handler, self.stage = handler, stage
        self.caller = ""
        self.calls: list[tuple[str, str, str]] = []  # (caller, method, path)

    def __call__(self, request: AWSRequest) -> tuple[int, bytes]:
        auth = request.headers.get("Authorization", "")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        assert auth.startswith("AWS4-HMAC-SHA256"), "unsigned request"
        url = urlsplit(request.url)
        path = url.path.removeprefix(f"/{self.stage}")
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        self.calls.append((self.caller, request.method, path))
        event = {
            "resource": path,
            "path": path,
            "httpMethod": request.method,
            "headers": {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
            "multiValueHeaders": {},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "stage": self.stage,
                "requestId": "r",
                "httpMethod": request.method,
                "path": path,
                "resourcePath": path,
                "identity": {"userArn": self.caller},
            },
            "body": body or None,
            "isBase64Encoded": False,
        }
        answer = self.handler.lambda_handler(event, LambdaContext())
        return int(answer["statusCode"]), (answer.get("body") or "").encode()


class LambdaContext:
    function_name = "journey"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:111111111111:function:journey"
    aws_request_id = "req-1"


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def function(template: dict[str, Any], logical_prefix: str) -> tuple[str, dict[str, Any]]:
    found = [
        (k, r)
        for k, r in resources(template, "AWS::Lambda::Function").items()
        if k.startswith(logical_prefix)
    ]
    assert len(found) == 1, (logical_prefix, [k for k, _ in found])
    return found[0]


def function_env(template: dict[str, Any], logical_prefix: str) -> dict[str, Any]:
    return dict(function(template, logical_prefix)[1]["Properties"]["Environment"]["Variables"])


def role_statements(template: dict[str, Any], function_prefix: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to a function's role."""
    role = function(template, function_prefix)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        s
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def state_machine(template: dict[str, Any]) -> dict[str, Any]:
    """The ASL with Lambda function ARNs written as `<LogicalId>` (the tokens sit inside JSON strings)."""
    [machine] = resources(template, "AWS::StepFunctions::StateMachine").values()
    body = machine["Properties"]["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(
        p if isinstance(p, str) else f"<{p['Fn::GetAtt'][0]}>" if "Fn::GetAtt" in p else "TOKEN"
        for p in parts
    )
    return dict(json.loads(text))


def walk(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """States in execution order along the main path (Choice: the first rule's branch, the gate)."""
    states, name = definition["States"], definition["StartAt"]
    while name:
        state = states[name]
        yield name, state
        name = state["Choices"][0]["Next"] if state["Type"] == "Choice" else state.get("Next")


def task_function(state: dict[str, Any]) -> str:
    """The logical id of the Lambda function a Task state invokes."""
    found = re.search(
        r"<([A-Za-z0-9]+)>", json.dumps(state.get("Parameters", {})) + state.get("Resource", "")
    )
    assert found, state
    return found.group(1)


def json_path(state: dict[str, Any], path: str) -> Any:
    value: Any = state
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def choice_holds(rule: dict[str, Any], state: dict[str, Any]) -> bool:
    """One Choice rule of the ASL the evaluation stack writes (BooleanEquals, IsPresent, And/Or/Not)."""
    if "Or" in rule:
        return any(choice_holds(r, state) for r in rule["Or"])
    if "And" in rule:
        return all(choice_holds(r, state) for r in rule["And"])
    if "Not" in rule:
        return not choice_holds(rule["Not"], state)
    try:
        value = json_path(state, rule["Variable"])
    except (KeyError, TypeError):
        return "IsPresent" in rule and rule["IsPresent"] is False
    if "IsPresent" in rule:
        return rule["IsPresent"] is True
    return value is rule["BooleanEquals"]


ENTRY_POINTS = {
    "prepare": "prepare",
    "score_batch": "score_batch",
    "summarize": "summarize_run",
    "gate": "gate_run",
}


def run_main_path(
    template: dict[str, Any], execution: dict[str, Any], rt: Any, s3: Any, bucket: str
) -> tuple[dict[str, Any], list[str]]:
    """Execute the synthesized evaluation state machine's main path with the real step functions (the
    evaluation.service entry points the handlers call), moto S3 for the map's reader: (final state, order).
    Choice states are decided by their rules; the main path is each Choice's first rule, which must hold."""
    from evaluation import handler, service

    state: dict[str, Any] = {}
    order = []
    for name, step in walk(state_machine(template)):
        order.append(name)
        if name == "ApplyDefaults":  # the execution name is the run id when the input names none
            defaults = {
                k.removesuffix(".$"): execution["run_id"] if v == "$$.Execution.Name" else v
                for k, v in step["Parameters"]["defaults"].items()
            }
            state = {"defaults": defaults, "input": execution}
        elif name == "MergeInput":
            assert step["Parameters"]["args.$"] == "States.JsonMerge($.defaults, $.input, false)"
            state = {"args": {**state["defaults"], **state["input"]}}
        elif step["Type"] == "Task":
            entry = function(template, task_function(step))[1]["Properties"]["Handler"].removeprefix(
                "evaluation.handler."
            )
            assert hasattr(handler, entry)
            if step.get("InputPath"):
                event = json_path(state, step["InputPath"])
            else:
                event = {k.removesuffix(".$"): json_path(state, v) for k, v in step["Parameters"].items()}
            state[step["ResultPath"].removeprefix("$.")] = getattr(service, ENTRY_POINTS[entry])(event, rt)
        elif step["Type"] == "Map":
            reader = step["ItemReader"]
            assert reader["ReaderConfig"]["InputType"] == "JSONL"
            dataset = s3.get_object(Bucket=bucket, Key=json_path(state, reader["Parameters"]["Key.$"]))
            items = [json.loads(line) for line in dataset["Body"].read().decode().splitlines() if line]
            batcher = step["ItemBatcher"]
            batch_input = {
                k.removesuffix(".$"): json_path(state, v) for k, v in batcher["BatchInput"].items()
            }
            [(inner_name, inner)] = step["ItemProcessor"]["States"].items()
            entry = function(template, task_function(inner))[1]["Properties"]["Handler"].removeprefix(
                "evaluation.handler."
            )
            assert entry == "score_batch", inner_name
            size = batcher["MaxItemsPerBatch"]
            for start in range(0, len(items), size):
                service.score_batch({"Items": items[start : start + size], "BatchInput": batch_input}, rt)
        elif step["Type"] == "Choice":
            rule = step["Choices"][0]
            assert choice_holds(rule, state), (name, rule)
        elif step["Type"] == "Succeed":
            state["output"] = json_path(state, step["OutputPath"])
    return state, order
