"""GuardrailEngine: run the enabled layers concurrently, each with a timeout, and merge one verdict.

Importable in-process (`from guardrail.engine import GuardrailEngine`) as well as used by the Lambda
handler; clients, record sink and layers can be injected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from guardrail import clients
from guardrail.layers.base import Layer
from guardrail.layers.bedrock import BedrockGuardrailLayer
from guardrail.layers.local_rules import LocalRulesLayer
from guardrail.layers.pii import PiiLayer
from guardrail.layers.toxicity import ToxicityLayer
from guardrail.model import CheckRequest, LayerResult
from guardrail.records import RecordSink, decision_record, publish_layer_metrics
from guardrail.settings import GuardrailSettings
from guardrail.verdict import Verdict, merge

logger = logging.getLogger(__name__)
_LAYER_ORDER = ("local_rules", "toxicity", "pii", "bedrock")


class InvalidRequestError(ValueError):
    """The request cannot be checked; the message names the field."""


def default_layers(
    settings: GuardrailSettings,
    *,
    comprehend: Any = None,
    bedrock_runtime: Any = None,
    bedrock_ref: tuple[str, str] | None = None,
) -> dict[str, Layer]:
    guardrail = settings.bedrock_guardrail
    if bedrock_ref is None and guardrail is not None and guardrail.guardrail_id is not None:
        bedrock_ref = (guardrail.guardrail_id, guardrail.version or "")
    guardrail_id, version = bedrock_ref or (None, None)
    comprehend_client = comprehend or _Lazy(clients.comprehend)
    return {
        "local_rules": LocalRulesLayer(),
        "toxicity": ToxicityLayer(comprehend_client, settings.language_code),
        "pii": PiiLayer(comprehend_client, settings.language_code),
        "bedrock": BedrockGuardrailLayer(
            bedrock_runtime or _Lazy(clients.bedrock_runtime), guardrail_id, version
        ),
    }


class GuardrailEngine:
    def __init__(
        self,
        settings: GuardrailSettings,
        *,
        layers: Mapping[str, Layer] | None = None,
        comprehend: Any = None,
        bedrock_runtime: Any = None,
        bedrock_ref: tuple[str, str] | None = None,
        sink: RecordSink | None = None,
        metrics: bool = True,
        executor: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self._layers = (
            dict(layers)
            if layers is not None
            else default_layers(
                settings, comprehend=comprehend, bedrock_runtime=bedrock_runtime, bedrock_ref=bedrock_ref
            )
        )
        self._sink = sink
        self._metrics = metrics
        self._executor = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="guardrail")
        self._clock = clock

    def check(self, request: CheckRequest) -> Verdict:
        validate_request(request)
        direction = self.settings.for_direction(request.direction)
        switches = direction.layers.model_dump()
        enabled = [name for name in _LAYER_ORDER if switches.get(name) and name in self._layers]
        enabled += [name for name in self._layers if name not in _LAYER_ORDER]  # injected extra layers

        start = self._clock()
        futures: dict[str, Future[tuple[LayerResult, float]]] = {
            name: self._executor.submit(self._timed, self._layers[name], request) for name in enabled
        }
        results: dict[str, LayerResult] = {}
        errors: dict[str, str] = {}
        latency: dict[str, float] = {}
        deadline = start + direction.layer_timeout_s
        for name, future in futures.items():
            try:
                results[name], latency[name] = future.result(timeout=max(0.0, deadline - self._clock()))
            except FutureTimeout:
                future.cancel()
                errors[name] = f"timed out after {direction.layer_timeout_s} s"
                latency[name] = direction.layer_timeout_s * 1000
            except Exception as err:  # a layer's failure is data for the failure policy, not a crash
                logger.warning("guardrail layer %s failed: %s", name, err)
                errors[name] = f"{type(err).__name__}: {err}"[:500]
                latency[name] = (self._clock() - start) * 1000
        verdict = merge(request, results, errors, latency, direction.failure_policy)
        self._record(request, verdict)
        return verdict

    def _timed(self, layer: Layer, request: CheckRequest) -> tuple[LayerResult, float]:
        begin = self._clock()
        result = layer.check(request, self.settings.for_direction(request.direction))
        return result, (self._clock() - begin) * 1000

    def _record(self, request: CheckRequest, verdict: Verdict) -> None:
        # Recording must never change or break the verdict the caller gets.
        if self._metrics:
            try:
                publish_layer_metrics(request, verdict)
            except Exception:
                logger.exception("guardrail metrics failed")
        if self._sink is not None:
            try:
                direction = self.settings.for_direction(request.direction)
                pii_layers = ("pii", "local_rules") if direction.local_rules.pii_regex_fallback else ("pii",)
                self._sink.append(decision_record(request, verdict, pii_layers))
            except Exception:
                logger.exception("guardrail decision record failed")


def validate_request(request: CheckRequest) -> None:
    if request.direction not in ("input", "output"):
        raise InvalidRequestError(f"direction: must be 'input' or 'output', got {request.direction!r}")
    if not request.items:
        raise InvalidRequestError("content: at least one content item is required")
    for index, item in enumerate(request.items):
        if not item.text.strip():
            raise InvalidRequestError(f"content[{index}].text: must not be empty")
        try:
            item.text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InvalidRequestError(
                f"content[{index}].text: not valid UTF-8 (lone surrogate at character {err.start})"
            ) from err


class _Lazy:
    """Defers client creation to the first call, so building an engine never touches AWS."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory(), name)
