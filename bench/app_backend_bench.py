"""Application backend benchmark: /invoke overhead with fixed-latency doubles, and cold-start import time.

    python bench/app_backend_bench.py [--requests 300]

Overhead = wall time of `handler.app.resolve(event)` minus the time measured inside the doubles
(input filter, catalog, model lookup, model, output filter, table put), so it is what the backend itself adds: routing,
parsing, validation, rendering, hashing, response shaping. Doubles sleep a fixed latency. The same prompt is
also run as a three-step chain (each step reads the previous step's output), whose every step has its own
input check: the chain's guardrail and model calls per request are counted, not assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

LATENCY_S = {"filter": 0.005, "catalog": 0.0, "model": 0.050, "table": 0.003}


CHAIN_STEPS = 3


class Clocked:
    spent = 0.0
    calls: ClassVar[dict[str, int]] = {}

    @classmethod
    def wait(cls, seconds: float, double: str) -> None:
        cls.calls[double] = cls.calls.get(double, 0) + 1
        start = time.perf_counter()
        if seconds:
            time.sleep(seconds)
        cls.spent += time.perf_counter() - start


class FilterDouble:
    def check(self, event: Any) -> dict[str, Any]:
        Clocked.wait(LATENCY_S["filter"], "filter")
        texts = [item["text"] for item in event["content"]]
        return {"action": "allow", "text": "\n\n".join(texts), "texts": texts, "findings": [], "errors": {}}


class ModelDouble:
    name = "bench-model"

    def invoke(self, request: Any) -> Any:
        from common.model_gateway import ModelResponse

        Clocked.wait(LATENCY_S["model"], "model")
        return ModelResponse(text="x" * 800, latency_ms=LATENCY_S["model"] * 1000)


class TableDouble:
    def put_item(self, **_: Any) -> None:
        Clocked.wait(LATENCY_S["table"], "table")

    def query(self, **_: Any) -> dict[str, Any]:
        # `"model": "auto"` looks up the tenant's served models first; this tenant has none.
        Clocked.wait(LATENCY_S["table"], "table")
        return {"Items": []}


class CatalogDouble:
    def __init__(self) -> None:
        from prompt_catalog.chains import ResolvedPrompt
        from prompt_catalog.models import PromptContent

        content = PromptContent.model_validate(
            {
                "template": "Answer as a support agent.\n{{ question }}\nContext: {{ context }}",
                "variables": [{"name": "question"}, {"name": "context"}],
            }
        )
        self.resolved = ResolvedPrompt("qa:prod", "qa", 4, content)

    def prompt(self, name: str, alias: str) -> Any:
        Clocked.wait(LATENCY_S["catalog"], "catalog")
        return self.resolved

    def chain(self, name: str, alias: str) -> Any:
        """`qa` three times, each step asking about the previous step's answer."""
        from prompt_catalog.models import ChainContent

        Clocked.wait(LATENCY_S["catalog"], "catalog")
        questions = ["request.question"] + [f"steps.s{i}.output" for i in range(CHAIN_STEPS - 1)]
        steps = [
            {"id": f"s{i}", "prompt": "qa@4", "inputs": {"question": question, "context": "request.context"}}
            for i, question in enumerate(questions)
        ]
        chain = ChainContent.model_validate(
            {"variables": [{"name": "question"}, {"name": "context"}], "steps": steps}
        )
        return chain, {"qa@4": self.resolved}


def build() -> Any:
    from app_backend import handler
    from app_backend.service import AppService
    from app_backend.settings import ApplicationSettings, EndUserCatalog
    from app_backend.store import AppStore

    service = AppService(
        # The use case must offer the prompt to end users (application.end_user_catalog), or /invoke is a 403.
        settings=ApplicationSettings(end_user_catalog=EndUserCatalog(prompts=["qa"], chains=["qa-chain"])),
        business_unit="retail",
        use_case="product-qa",
        guard=FilterDouble(),
        catalog=CatalogDouble(),
        store=AppStore(TableDouble()),
        default_model=ModelDouble(),
        tenant_model=lambda item: ModelDouble(),
        ratings=None,  # type: ignore[arg-type]
        candidates=None,  # type: ignore[arg-type]
        stage="prod",
    )
    handler.use_service(service)
    return handler


def event(target: str = "prompt") -> dict[str, Any]:
    """An /invoke of the `qa` prompt, or (target "chain") of the three-step chain of it."""
    name = "qa" if target == "prompt" else "qa-chain"
    variables = {"question": "Where is my order 1234? " * 10, "context": "c" * 2000}
    body = {target: name, "variables": variables}
    return {
        "path": "/invoke",
        "httpMethod": "POST",
        "resource": "/invoke",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"authorizer": {"claims": {"sub": "5f1c7e0a-aaaa-bbbb-cccc-123456789012"}}},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def invoke_overhead(requests: int, sample: dict[str, Any]) -> dict[str, float]:
    handler = build()
    for _ in range(20):  # warm caches (jinja compile, pydantic)
        handler.app.resolve(sample, None)
    overheads, walls, spent = [], [], []
    Clocked.calls = {}
    for _ in range(requests):
        Clocked.spent = 0.0
        start = time.perf_counter()
        answer = handler.app.resolve(sample, None)
        wall = time.perf_counter() - start
        assert answer["statusCode"] == 200, answer
        walls.append(wall * 1000)
        spent.append(Clocked.spent * 1000)
        overheads.append((wall - Clocked.spent) * 1000)
    return {
        "overhead_p50_ms": statistics.median(overheads),
        "overhead_p99_ms": percentile(overheads, 0.99),
        "wall_p50_ms": statistics.median(walls),
        "doubles_p50_ms": statistics.median(spent),
        "filter_calls": Clocked.calls.get("filter", 0) / requests,
        "model_calls": Clocked.calls.get("model", 0) / requests,
    }


def import_time(module: str, runs: int = 7) -> float:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambdas")}
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(f"/invoke, {args.requests} requests each; latency of the doubles: {LATENCY_S}")
    results = {target: invoke_overhead(args.requests, event(target)) for target in ("prompt", "chain")}
    for target, result in results.items():
        label = "prompt" if target == "prompt" else f"chain of {CHAIN_STEPS} steps"
        print(
            f"  {label}: {result['filter_calls']:.0f} guardrail calls and {result['model_calls']:.0f} model"
            f" calls per request; wall p50 {result['wall_p50_ms']:.2f} ms (doubles {result['doubles_p50_ms']:.1f}"
            f" ms); backend overhead p50 {result['overhead_p50_ms']:.3f} ms, p99 {result['overhead_p99_ms']:.3f} ms"
        )
    prompt, chain = results["prompt"], results["chain"]
    print(
        f"  chain / prompt: wall p50 {chain['wall_p50_ms'] / prompt['wall_p50_ms']:.2f}, "
        f"backend overhead p50 {chain['overhead_p50_ms'] / prompt['overhead_p50_ms']:.2f}"
    )
    handler_ms = import_time("app_backend.handler")
    baseline_ms = import_time("aws_lambda_powertools.event_handler")
    print("cold-start import (median of 7 fresh interpreters)")
    print(
        f"  app_backend.handler {handler_ms:.0f} ms; Powertools event_handler alone {baseline_ms:.0f} ms "
        f"(ratio {handler_ms / baseline_ms:.2f})"
    )


if __name__ == "__main__":
    main()
