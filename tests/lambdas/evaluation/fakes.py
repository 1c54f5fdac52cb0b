"""Model doubles for evaluation tests."""

import json

from common.model_gateway import ModelResponse


class ScriptedModel:
    """Answers from a list (cycled) or a function of the prompt; counts calls."""

    def __init__(self, name, answers=None, *, fn=None, latency_ms=10.0, tokens=(10, 5)):
        self.name, self.answers, self.fn = name, list(answers or []), fn
        self.latency_ms, self.tokens, self.calls = latency_ms, tokens, []

    def invoke(self, request):
        self.calls.append(request)
        if self.fn is not None:
            result = self.fn(request)
        else:
            result = self.answers[(len(self.calls) - 1) % len(self.answers)]
        if isinstance(result, Exception):
            raise result
        return ModelResponse(result, self.latency_ms, *self.tokens)


def verdict(overall, **overrides):
    body = {
        "helpfulness": overall,
        "relevance": overall,
        "accuracy": overall,
        "level_of_detail": overall,
        "overall": overall,
        "justification": f"Scored {overall}.",
    }
    body.update(overrides)
    return json.dumps(body)


def make_settings(**fields):
    """EvaluationSettings from plain dicts, as the config file gives them."""
    from evaluation.settings import EvaluationSettings

    return EvaluationSettings.model_validate(fields)
