"""What each route does, with every AWS dependency injected (tests pass doubles, moto or Stubber)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from guardrail.engine import InvalidRequestError
from prompt_catalog.chains import RenderedStep, ResolvedPrompt, final_step, run_chain
from prompt_catalog.models import ModelParameters
from prompt_catalog.rendering import render

from app_backend.catalog import PromptSource
from app_backend.filters import (
    CheckedPrompt,
    chain_kept_values,
    check_prompt,
    filter_event,
    redacted_or_none,
)
from app_backend.fine_tunes import package_version
from app_backend.models import (
    ConflictError,
    FineTuneBody,
    ForbiddenError,
    InvokeBody,
    ModelEmptyOutputError,
    NotEnabledError,
    NotFoundError,
    RatingBody,
    TooManyRequestsError,
    UnprocessableError,
    UploadBody,
    UpstreamUnavailableError,
)
from app_backend.quotas import Route, TenantQuotas
from app_backend.settings import ApplicationSettings
from app_backend.store import AppStore, StoredRequest
from app_backend.uploads import TenantUploads
from common.evaluation_dataset import EvaluationRecord, dump_records
from common.fine_tuning_runs import AtCapacityError, UnknownUseCaseError
from common.lake_layout import stage_prefix
from common.lake_records import LakeRecord, RatingRecord, UsageRecord
from common.model_gateway import ModelClient, ModelError, ModelRequest, ModelResponse, ModelThrottledError
from common.model_pricing import ModelPrice
from common.model_usage import OnlineSample, sampled
from common.prompt_client import PromptFetchError, PromptNotFoundError
from common.quality_metrics import emit_delivery_failure, emit_rating

if TYPE_CHECKING:
    from guardrail.client import GuardrailCaller

ModelFactory = Callable[[Mapping[str, Any]], ModelClient]
logger = logging.getLogger(__name__)
MAX_LISTED_FINE_TUNES = 10  # GET /models describes each listed run: keep the calls per request bounded


class RecordSink(Protocol):
    """`common.lake_writer.LakeWriter` satisfies this."""

    def append(self, record: LakeRecord) -> None: ...

    def flush(self) -> list[str]: ...


class MessageSink(Protocol):
    """`common.model_usage.SqsMessages` satisfies this: one queue message per call."""

    def send(self, message: UsageRecord | OnlineSample) -> None: ...


class CandidateSink(Protocol):
    def put(self, key: str, body: str) -> None: ...


class FineTunePipeline(Protocol):
    def resolve_use_case(self, use_case: str | None) -> str: ...

    def start(self, tenant_id: str, client_token: str, model_name: str, use_case: str) -> str: ...

    def status(self, execution_arn: str) -> dict[str, Any]: ...


def candidate_key(business_unit: str, stage: str, use_case: str, rating_id: str) -> str:
    """Where a candidate goes in the feedback zone (under the stage's own prefix); testers accept it
    into the evaluation datasets."""
    return f"{stage_prefix(business_unit, stage)}evaluation_candidates/{use_case}/{rating_id}.jsonl"


@dataclass(frozen=True)
class _Ran:
    """A prompt or chain after its input checks and model calls."""

    output: str | None  # the (last) model output; None: an input check blocked
    prompt_ref: str
    input_verdicts: list[Mapping[str, Any]]  # one per guardrail call, in order
    question: str | None = None  # for the online judge: filtered input only
    kept: dict[str, Any] | None = None  # the redacted values to store (`check_prompt`)


@dataclass
class AppService:
    settings: ApplicationSettings
    business_unit: str
    use_case: str
    guard: GuardrailCaller
    catalog: PromptSource
    store: AppStore
    default_model: ModelClient
    tenant_model: ModelFactory
    ratings: RecordSink
    candidates: CandidateSink
    # The stage this service runs in: the lake prefix it writes under (`<bu>/<stage>/`, the only one its
    # roles may write) and the prompt catalog alias it serves (end users never choose it).
    stage: str
    uploads: TenantUploads | None = None
    fine_tunes: FineTunePipeline | None = None
    clock: Callable[[], float] = time.time
    # Cost and quality of production traffic (docs/cost.md): a usage record per answered /invoke, a sample
    # of exchanges for the online judge, the default model's dated price and the inference profile it uses.
    usage: MessageSink | None = None
    samples: MessageSink | None = None
    sample_rate: float = 0.0
    model_price: ModelPrice | None = None
    inference_profile: str | None = None
    timer: Callable[[], float] = time.perf_counter
    quotas: TenantQuotas | None = None

    # ---- POST /invoke ----------------------------------------------------------------------------

    def invoke(self, tenant_id: str, body: InvokeBody) -> dict[str, Any]:
        started = self.timer()
        self._check_offered(body)
        self._consume(tenant_id, "invoke")
        model = self._model_for(tenant_id, body.model)
        request_id = uuid.uuid4().hex
        ids = self._ids(model.name, request_id, tenant_id)
        calls: list[ModelResponse] = []
        ran = (
            self._run_prompt(body, model, ids, calls)
            if body.prompt
            else self._run_chain(body, model, ids, calls)
        )
        verdicts: dict[str, Any] = {}
        if ran.input_verdicts:
            verdicts["input"] = _input_summary(ran.input_verdicts)
        if ran.output is None:
            self._record_usage(tenant_id, body, model, request_id, calls, started, blocked="input")
            return {"output": None, "request_id": request_id, "blocked": "input", "verdicts": verdicts}
        output_verdict = self._output_verdict(ran.output, ids)
        verdicts["output"] = _summary(output_verdict)
        blocked = output_verdict["action"] == "block"
        answer = None if blocked else str(output_verdict["text"])

        self.store.put_request(
            tenant_id,
            StoredRequest(
                request_id=request_id,
                prompt_ref=ran.prompt_ref,
                kind="prompt" if body.prompt else "chain",
                model=model.name,
                variables_redacted=None if ran.kept is None else json.dumps(ran.kept, sort_keys=True),
                output_redacted=redacted_or_none(output_verdict),
                input_sha256=_sha256(json.dumps(body.variables, sort_keys=True)),
                output_sha256=_sha256(ran.output),
                created_at=int(self.clock()),
            ),
        )
        result = {"output": answer, "request_id": request_id, "model": model.name, "verdicts": verdicts}
        if blocked:
            result["blocked"] = "output"
        # Only what passed both filters, redacted, with every layer run, is sampled for the judge.
        redacted_answer = redacted_or_none(output_verdict)
        sample = None
        every_layer_ran = not any(verdict.get("errors") for verdict in ran.input_verdicts)
        if (
            not blocked
            and every_layer_ran
            and ran.question
            and redacted_answer
            and sampled(request_id, self.sample_rate)
        ):
            sample = OnlineSample(
                business_unit=self.business_unit,
                request_id=request_id,
                tenant_id=tenant_id,
                use_case=self.use_case,
                model_id=model.name,
                prompt_ref=ran.prompt_ref,
                question=ran.question,
                answer=redacted_answer,
                event_time=datetime.fromtimestamp(self.clock(), UTC),
            )
        self._record_usage(
            tenant_id,
            body,
            model,
            request_id,
            calls,
            started,
            prompt_ref=ran.prompt_ref,
            blocked="output" if blocked else None,
            sample=sample,
        )
        return result

    def _run_prompt(
        self, body: InvokeBody, model: ModelClient, ids: Mapping[str, str], calls: list[ModelResponse]
    ) -> _Ran:
        """A single prompt: rendered before the input check, because PII split across values, or between a
        value and the template's text, shows whole only in the prompt as the model will see it."""
        prompt = self._prompt(body.name)
        values = dict(body.variables)
        render = partial(self._render, prompt)
        checked = check_prompt(self.guard, render(values), values, render, field="variables", ids=ids)
        verdicts = [checked.verdict] if checked.verdict is not None else []
        if checked.sent is None:
            return _Ran(None, "", verdicts)
        output = self._send(prompt.content.model_parameters, checked.sent, model, calls)
        # The question for the online judge: the prompt the model received.
        return _Ran(output, f"{prompt.name}@{prompt.version}", verdicts, checked.sent, checked.kept)

    def _run_chain(
        self, body: InvokeBody, model: ModelClient, ids: Mapping[str, str], calls: list[ModelResponse]
    ) -> _Ran:
        """A chain: each step's prompt goes through `check_prompt` as a single prompt does, with the values
        it is rendered with: the end user's and earlier steps' outputs (model output that never passed the
        output filter could carry PII or an injection into the next step). One guardrail call per step; a
        block stops the chain there. The question for the online judge is the kept values
        (`chain_kept_values`), not a step's prompt, which holds those unfiltered outputs."""
        try:
            chain, prompts = self.catalog.chain(body.name, self.stage)
        except PromptNotFoundError:
            raise NotFoundError("chain", f"{body.name!r} has no alias {self.stage!r}") from None
        except PromptFetchError as exc:
            raise UpstreamUnavailableError("prompt", f"the prompt catalog is unavailable ({exc})") from None
        checks: dict[str, CheckedPrompt] = {}

        def invoke_step(step: RenderedStep) -> str | None:
            render = partial(self._render, prompts[step.prompt_ref])
            field = f"steps.{step.step_id}"
            checked = check_prompt(self.guard, step.text, step.inputs, render, field=field, ids=ids)
            checks[step.step_id] = checked
            if checked.sent is None:
                return None
            return self._send(step.model_parameters, checked.sent, model, calls)

        outputs = run_chain(chain, prompts, body.variables, invoke_step)
        verdicts = [check.verdict for check in checks.values() if check.verdict is not None]
        last = final_step(chain)
        if last not in outputs:  # a step was blocked
            return _Ran(None, "", verdicts)
        kept = chain_kept_values(chain, checks)
        question = None if kept is None else json.dumps(kept, sort_keys=True, ensure_ascii=False)
        return _Ran(outputs[last], f"chain/{body.name}:{self.stage}", verdicts, question, kept)

    def _record_usage(
        self,
        tenant_id: str,
        body: InvokeBody,
        model: ModelClient,
        request_id: str,
        calls: list[ModelResponse],
        started: float,
        *,
        prompt_ref: str | None = None,
        blocked: str | None = None,
        sample: OnlineSample | None = None,
    ) -> None:
        """Queue the usage record (and the sample): the answer is already paid for, so a queue outage is
        logged and counted (alarm `UsageDeliveryFailures`), never turned into an error for the user."""
        default = model is self.default_model
        provider = self.settings.default_model.provider if default else "sagemaker"
        price = self.model_price if default and provider == "bedrock" else None
        input_tokens = _total([c.input_tokens for c in calls])
        output_tokens = _total([c.output_tokens for c in calls])
        record = UsageRecord(
            business_unit=self.business_unit,
            model_id=model.name,
            event_time=datetime.fromtimestamp(self.clock(), UTC),
            request_id=request_id,
            tenant_id=tenant_id,
            use_case=self.use_case,
            provider=provider,
            inference_profile=self.inference_profile if default and provider == "bedrock" else None,
            prompt_ref=prompt_ref,
            model_calls=len(calls),
            input_tokens=input_tokens if calls else 0,
            output_tokens=output_tokens if calls else 0,
            model_latency_ms=sum(c.latency_ms for c in calls),
            request_latency_ms=max(0.0, (self.timer() - started) * 1000),
            cost_usd=(price.cost_usd(input_tokens, output_tokens) if calls else 0.0) if price else None,
            price_table_date=price.price_date if price else None,
            blocked=blocked,  # type: ignore[arg-type]  # "input" | "output" | None by construction
            sampled_for_evaluation=sample is not None,
        )
        for kind, sink, message in (("usage", self.usage, record), ("sample", self.samples, sample)):
            if sink is None or message is None:
                continue
            try:
                sink.send(message)
            except Exception:
                logger.exception("could not queue the %s message of request %s", kind, request_id)
                emit_delivery_failure(self.business_unit, kind)

    def _output_verdict(self, output: str, ids: Mapping[str, str]) -> dict[str, Any]:
        """The output guardrail's verdict on the model's answer. An answer the guardrail refuses to check
        (more text than it takes, text that is not valid UTF-8) is blocked whatever the failure policy says:
        that policy is for an unavailable guardrail, and unchecked text is never released or stored."""
        try:
            return self.guard.check(filter_event("output", output, **ids))
        except InvalidRequestError as exc:
            return {
                "action": "block",
                "text": None,
                "texts": [],
                "findings": [],
                "errors": {"guardrail": f"the answer was not checked: {exc}"[:500]},
            }

    def _check_offered(self, body: InvokeBody) -> None:
        """Only the prompts and chains this use case's config lists (application.end_user_catalog)."""
        offered = self.settings.end_user_catalog
        field, allowed = ("prompt", offered.prompts) if body.prompt else ("chain", offered.chains)
        if body.name not in allowed:
            raise ForbiddenError(field, f"{body.name!r} is not offered to end users of this use case")

    def _consume(self, tenant_id: str, route: Route) -> None:
        if self.quotas is not None:
            self.quotas.consume(tenant_id, route)

    def _model_for(self, tenant_id: str, choice: str) -> ModelClient:
        """'auto': the tenant's served model, the base model while it has none; 'default': the base model."""
        if choice == "default":
            return self.default_model
        models = self.store.list_models(tenant_id)
        if models:
            return self.tenant_model(models[0])
        if choice == "personal":
            raise ConflictError("model", "you have no personal model yet; use 'default'")
        return self.default_model

    def _prompt(self, name: str) -> ResolvedPrompt:
        try:
            return self.catalog.prompt(name, self.stage)
        except PromptNotFoundError:
            raise NotFoundError("prompt", f"{name!r} has no alias {self.stage!r}") from None
        except PromptFetchError as exc:
            raise UpstreamUnavailableError("prompt", f"the prompt catalog is unavailable ({exc})") from None

    @staticmethod
    def _render(prompt: ResolvedPrompt, values: Mapping[str, Any]) -> str:
        name = f"prompt {prompt.name}@{prompt.version}"
        return render(prompt.content.template, prompt.content.variables, values, name=name)

    @staticmethod
    def _send(params: ModelParameters, text: str, model: ModelClient, calls: list[ModelResponse]) -> str:
        call = ModelRequest(prompt=text, max_tokens=params.max_tokens, temperature=params.temperature)
        return _call(model, call, calls)

    def _ids(self, model: str, request_id: str, tenant_id: str) -> dict[str, str]:
        return {
            "business_unit": self.business_unit,
            "model_id": model,
            "request_id": request_id,
            "tenant_id": tenant_id,
        }

    # ---- POST /ratings ---------------------------------------------------------------------------

    def rate(self, tenant_id: str, body: RatingBody) -> dict[str, Any]:
        request = self.store.get_request(tenant_id, body.request_id)
        if request is None:
            raise NotFoundError("request_id", "no request with this id was made by you")
        comment = None
        if body.comment and body.comment.strip():
            event = filter_event(
                "input", body.comment, **self._ids(request.model, request.request_id, tenant_id)
            )
            comment = redacted_or_none(self.guard.check(event))
            comment = comment[: self.settings.ratings.max_comment_chars] if comment else None
        rating_id = _sha256(f"{tenant_id}\n{request.request_id}")[:32]
        stored, created = self.store.claim_rating(
            tenant_id,
            request.request_id,
            {
                "rating_id": rating_id,
                "rating_type": "stars" if body.stars is not None else "thumbs",
                "value": body.stars if body.stars is not None else int(body.thumbs == "up"),
                "comment": comment,
                "event_time": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
            },
        )
        if created:
            # The quality signal "share of low ratings" (docs/monitoring.md): once per stored rating.
            emit_rating(self.business_unit, str(stored["rating_type"]), int(stored["value"]))
        if not stored.get("published"):
            try:
                self._publish(tenant_id, request, stored)
            except Exception as exc:
                # The rating is kept; a retry of the same rating finishes publishing it.
                raise UpstreamUnavailableError(
                    "ratings", f"saved but not yet published, retry ({exc})"
                ) from exc
            self.store.mark_published(tenant_id, request.request_id)
        return {"rating_id": stored["rating_id"], "request_id": request.request_id, "duplicate": not created}

    def _publish(self, tenant_id: str, request: StoredRequest, rating: Mapping[str, Any]) -> None:
        """Lake record and evaluation candidate, rebuilt from the stored rating: a retry writes the same."""
        record = RatingRecord(
            business_unit=self.business_unit,
            model_id=request.model,
            event_time=datetime.fromisoformat(str(rating["event_time"])),
            rating_id=str(rating["rating_id"]),
            request_id=request.request_id,
            tenant_id=tenant_id,
            use_case=self.use_case,
            rating_type=rating["rating_type"],
            value=int(rating["value"]),
            comment=rating.get("comment"),
            prompt_ref=request.prompt_ref,
        )
        self.ratings.append(record)
        self.ratings.flush()
        candidate = self._candidate(record, request)
        if candidate is not None:
            key = candidate_key(self.business_unit, self.stage, self.use_case, record.rating_id)
            self.candidates.put(key, dump_records([candidate]))

    def _candidate(self, rating: RatingRecord, request: StoredRequest) -> EvaluationRecord | None:
        """Well or badly rated prompt requests become candidate records (redacted); chains do not:
        a candidate must name one catalog prompt the evaluation engine can render again."""
        bands = self.settings.ratings
        if rating.rating_type == "stars":
            good, bad = rating.value >= bands.good_at_least, rating.value <= bands.bad_at_most
        else:
            good, bad = rating.value == 1, rating.value == 0
        if not (good or bad) or request.kind != "prompt" or request.variables_redacted is None:
            return None
        return EvaluationRecord(
            id=f"rating-{rating.rating_id}",
            prompt_ref=request.prompt_ref,
            variables=json.loads(request.variables_redacted),
            reference_output=request.output_redacted if good else None,
            category="user-rating",
            labels=["rated-good" if good else "rated-bad"],
        )

    # ---- uploads ---------------------------------------------------------------------------------

    def create_upload(self, tenant_id: str, body: UploadBody) -> dict[str, Any]:
        uploads = self._uploads()
        self._consume(tenant_id, "uploads")
        if body.content_type not in uploads.settings.content_types:
            raise UnprocessableError(
                "body.content_type", f"allowed: {', '.join(uploads.settings.content_types)}"
            )
        return uploads.presigned_post(tenant_id, body.file_name, body.content_type)

    def list_uploads(self, tenant_id: str) -> dict[str, Any]:
        uploads = self._uploads()
        self._consume(tenant_id, "uploads")  # each listing assumes a tenant-scoped STS session
        return {"uploads": uploads.list(tenant_id)}

    def _uploads(self) -> TenantUploads:
        if self.uploads is None:
            raise NotEnabledError("uploads", "uploads are not enabled in this environment")
        return self.uploads

    # ---- fine-tunes and models -------------------------------------------------------------------

    def start_fine_tune(self, tenant_id: str, body: FineTuneBody) -> dict[str, Any]:
        if self.fine_tunes is None:
            raise NotEnabledError("fine_tunes", "fine-tuning is not enabled in this environment")
        try:  # before the quota and the cap: a bad request costs the tenant nothing
            use_case = self.fine_tunes.resolve_use_case(body.use_case)
        except UnknownUseCaseError as exc:
            raise UnprocessableError("use_case", str(exc)) from None
        self._consume(tenant_id, "fine_tunes")
        fine_tune_id = uuid.uuid4().hex
        try:
            arn = self.fine_tunes.start(tenant_id, fine_tune_id, body.model_name, use_case)
        except AtCapacityError as exc:
            # A run takes minutes to hours; a minute is a polite first retry.
            raise TooManyRequestsError("fine_tunes", f"{exc}; retry later", retry_after=60) from None
        except Exception as exc:
            raise UpstreamUnavailableError("fine_tunes", f"the pipeline did not start ({exc})") from None
        self.store.put_fine_tune(tenant_id, fine_tune_id, body.model_name, arn, use_case=use_case)
        return {
            "fine_tune_id": fine_tune_id,
            "model_name": body.model_name,
            "use_case": use_case,
            "status": "training",
        }

    def get_fine_tune(self, tenant_id: str, fine_tune_id: str) -> dict[str, Any]:
        item = self.store.get_fine_tune(tenant_id, fine_tune_id)
        if item is None:
            raise NotFoundError("fine_tune_id", "no fine-tune with this id was started by you")
        return self._fine_tune_view(tenant_id, item)

    def _fine_tune_view(self, tenant_id: str, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "fine_tune_id": str(item["sk"]).removeprefix("FINETUNE#"),
            "model_name": item["model_name"],
            # Runs recorded before fine-tunes named their use case have none.
            **({"use_case": item["use_case"]} if "use_case" in item else {}),
            **self._fine_tune_status(tenant_id, str(item["execution_arn"])),
        }

    def _fine_tune_status(self, tenant_id: str, execution_arn: str) -> dict[str, Any]:
        if self.fine_tunes is None:
            raise NotEnabledError("fine_tunes", "fine-tuning is not enabled in this environment")
        try:
            state = self.fine_tunes.status(execution_arn)
        except Exception as exc:
            raise UpstreamUnavailableError("fine_tunes", f"the pipeline cannot be read ({exc})") from None
        if state["status"] != "registered":
            return state
        arn, approval = str(state["model_package_arn"]), state["approval"]
        version = package_version(arn)
        if approval == "PendingManualApproval":
            return {"status": "awaiting_review", "model_package_arn": arn}
        if approval != "Approved" or version is None:
            decided = state.get("approval_description")
            return {
                "status": "failed",
                "reason": f"the review set the model to {approval}" + (f" ({decided})" if decided else ""),
                "model_package_arn": arn,
            }
        deployment = self.store.deployment(tenant_id, *version)
        if deployment is None:
            return {"status": "deploying", "model_package_arn": arn}
        if deployment["status"] == "serving":
            return {"status": "serving", "model_package_arn": arn}
        reason = deployment.get("reason") or f"deployment {deployment['status']}"
        return {"status": "failed", "reason": str(reason), "model_package_arn": arn}

    def list_models(self, tenant_id: str) -> dict[str, Any]:
        models = self.store.list_models(tenant_id)
        fine_tunes = (
            self.store.list_fine_tunes(tenant_id, limit=MAX_LISTED_FINE_TUNES) if self.fine_tunes else []
        )
        return {
            "models": [
                {
                    "name": str(m["sk"]).removeprefix("MODEL#"),
                    "created_at": int(m.get("created_at", 0)),
                    "status": "serving",
                }
                for m in models
            ],
            "fine_tunes": [self._fine_tune_view(tenant_id, f) for f in fine_tunes],
        }


def _call(model: ModelClient, request: ModelRequest, calls: list[ModelResponse]) -> str:
    try:
        response = model.invoke(request)
    except ModelThrottledError as exc:
        raise UpstreamUnavailableError("model", f"the model is busy, retry later ({exc})") from None
    except ModelError as exc:
        raise UpstreamUnavailableError("model", f"the model call failed ({exc})") from None
    text = response.text
    if not isinstance(text, str) or not text.strip():
        # Nothing to filter, answer or rate; the guardrail refuses empty text, which used to be a 500.
        raise ModelEmptyOutputError("model", "the model returned no text; retry or rephrase the request")
    calls.append(response)
    return text


def _total(counts: list[int | None]) -> int | None:
    """Sum of the reported token counts; None when no call reported any."""
    reported = [c for c in counts if c is not None]
    return sum(reported) if reported else None


ACTION_RANK = {"allow": 0, "redact": 1, "block": 2}


def _input_summary(verdicts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The input verdicts of a request (one per chain step) as one: the strongest action, every finding."""
    ranked = max((v.get("action") for v in verdicts), key=lambda a: ACTION_RANK.get(str(a), 0))
    return {"action": ranked, "findings": [f for v in verdicts for f in _summary(v)["findings"]]}


def _summary(verdict: Mapping[str, Any]) -> dict[str, Any]:
    findings = [
        {"layer": f.get("layer"), "type": f.get("type"), "action": f.get("action")}
        for f in verdict.get("findings", [])
    ]
    return {"action": verdict.get("action"), "findings": findings}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
