"""Prompt catalog latency: render and fetch-from-cache, p50 / p99, 4 KB template with 20 variables.

Run: python bench/prompt_catalog_bench.py   (from the repository root; no AWS access needed)

Baselines measured in the same run: `str.format` on an equivalent template (the cheapest possible
render) and a cache miss through a fake transport with a fixed 20 ms latency (a stand-in for the API).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "lambdas")]

from botocore.credentials import Credentials  # noqa: E402
from prompt_catalog.models import VariableSpec  # noqa: E402
from prompt_catalog.rendering import _compiled, check_template, render  # noqa: E402

from common.prompt_client import PromptClient  # noqa: E402

VARIABLES = 20
TEMPLATE_BYTES = 4096
ROUNDS = 5000
MISS_LATENCY_S = 0.020


def build_template() -> tuple[str, str, list[VariableSpec], dict[str, str | int | float | bool]]:
    names = [f"var_{i:02d}" for i in range(VARIABLES)]
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
    jinja_parts, format_parts = [], []
    for name in names:
        jinja_parts.append(f"{filler}{{{{ {name} }}}}\n")
        format_parts.append(f"{filler}{{{name}}}\n")
    jinja, fmt = "".join(jinja_parts), "".join(format_parts)
    pad = TEMPLATE_BYTES - len(jinja.encode())
    jinja, fmt = jinja + "#" * pad, fmt + "#" * pad
    specs = [VariableSpec(name=n, type="string" if i % 2 else "integer") for i, n in enumerate(names)]
    values: dict[str, str | int | float | bool] = {
        n: (f"value {i}" if i % 2 else i) for i, n in enumerate(names)
    }
    return jinja, fmt, specs, values


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) / 1000, p99 / 1000


def timed(fn, rounds: int = ROUNDS) -> list[int]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return samples


def main() -> None:
    jinja, fmt, specs, values = build_template()
    check_template(jinja, specs, max_bytes=65_536, max_variables=100)
    results: dict[str, tuple[float, float]] = {}

    start = time.perf_counter_ns()
    render(jinja, specs, values)  # first call compiles (lru cache)
    results["render, first call (compile)"] = ((time.perf_counter_ns() - start) / 1000,) * 2
    results["render (warm, incl. type checks)"] = percentiles(timed(lambda: render(jinja, specs, values)))
    compiled = _compiled(jinja)
    results["jinja2 render only (no checks)"] = percentiles(timed(lambda: compiled.render(values)))
    results["baseline str.format"] = percentiles(timed(lambda: fmt.format(**values)))

    body = json.dumps(
        {
            "version": 3,
            "content": {
                "template": jinja,
                "variables": [s.model_dump() for s in specs],
                "model_parameters": {"temperature": 0.2, "max_tokens": 512},
            },
        }
    ).encode()

    def fake_api(request):
        time.sleep(MISS_LATENCY_S)
        return 200, body

    clock = [0.0]
    client = PromptClient(
        "https://example.execute-api.us-east-1.amazonaws.com/prod",
        region="us-east-1",
        ttl_seconds=60,
        transport=fake_api,
        credentials=Credentials("AKID", "secret"),
        clock=lambda: clock[0],
    )
    client.get("bench", "prod")
    results["fetch from cache (hit)"] = percentiles(timed(lambda: client.get("bench", "prod")))

    def miss() -> None:
        clock[0] += 61  # every call past the TTL: sign + fake 20 ms API + parse
        client.get("bench", "prod")

    results["fetch, cache miss (fake 20 ms API)"] = percentiles(timed(miss, rounds=100))

    print(
        f"template {len(jinja.encode())} bytes, {VARIABLES} variables, {ROUNDS} rounds;",
        f"Python {sys.version.split()[0]}",
    )
    print(f"{'measurement':40} {'p50 us':>10} {'p99 us':>10}")
    for name, (p50, p99) in results.items():
        print(f"{name:40} {p50:10.1f} {p99:10.1f}")
    render_p50 = results["render (warm, incl. type checks)"][0]
    print(f"render / str.format (p50): {render_p50 / results['baseline str.format'][0]:.1f}x")
    hit, miss_p50 = results["fetch from cache (hit)"][0], results["fetch, cache miss (fake 20 ms API)"][0]
    print(f"cache miss / hit (p50): {miss_p50 / hit:.0f}x")


if __name__ == "__main__":
    # --help answers with the docstring; the bench takes no options
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    main()
