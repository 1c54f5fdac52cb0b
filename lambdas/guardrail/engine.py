"""GuardrailEngine: run the enabled layers concurrently, each with a timeout, and merge one verdict.

Importable in-process (`from guardrail.engine import GuardrailEngine`) as well as used by the Lambda
handler; clients, record sink and layers can be injected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
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
# Threads per layer: concurrent checks of one process (in-process packaging serves several requests).
DEFAULT_THREADS_PER_LAYER = 4


class LayerSaturatedError(RuntimeError):
    """Every thread of a layer is still busy with earlier calls (a stuck provider)."""


class LayerRunner:
    """One bounded pool per layer. A call that times out keeps its thread until the provider answers;
    with a pool of its own, a stuck provider ties up only its own layer's threads, and once they are all
    busy its next calls fail at once (an error for the failure policy) instead of queueing: the other
    layers, the local rules included, keep their threads."""

    def __init__(self, name: str, max_workers: int = DEFAULT_THREADS_PER_LAYER) -> None:
        self.name = name
        self.max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"guardrail-{name}")
        self._free = threading.BoundedSemaphore(max_workers)

    def submit(self, fn: Callable[[], tuple[LayerResult, float]]) -> Future[tuple[LayerResult, float]]:
        if not self._free.acquire(blocking=False):
            failed: Future[tuple[LayerResult, float]] = Future()
            failed.set_exception(
                LayerSaturatedError(f"all {self.max_workers} threads of this layer are still busy")
            )
            return failed
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._free.release()
            raise
        future.add_done_callback(lambda _: self._free.release())
        return future


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
        threads_per_layer: int = DEFAULT_THREADS_PER_LAYER,
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
        self._runners = {name: LayerRunner(name, threads_per_layer) for name in self._layers}
        self._clock = clock

    def check(self, request: CheckRequest) -> Verdict:
        validate_request(request)
        direction = self.settings.for_direction(request.direction)
        switches = direction.layers.model_dump()
        enabled = [name for name in _LAYER_ORDER if switches.get(name) and name in self._layers]
        enabled += [name for name in self._layers if name not in _LAYER_ORDER]  # injected extra layers

        start = self._clock()
        futures: dict[str, Future[tuple[LayerResult, float]]] = {
            name: self._runners[name].submit(partial(self._timed, self._layers[name], request))
            for name in enabled
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
                # Written per verdict: a buffering sink (LakeWriter) in a long-lived process, the
                # in-process packaging, would otherwise hold the records until it ends and lose them.
                flush = getattr(self._sink, "flush", None)
                if flush is not None:
                    flush()
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
    if request.rendered is not None:
        if not request.rendered.strip():
            raise InvalidRequestError("rendered: must not be empty")
        try:
            request.rendered.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InvalidRequestError(
                f"rendered: not valid UTF-8 (lone surrogate at character {err.start})"
            ) from err


class _Lazy:
    """Defers client creation to the first call, so building an engine never touches AWS."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory(), name)
