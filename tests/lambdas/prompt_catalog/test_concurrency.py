from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prompt_catalog.models import PromptContent
from prompt_catalog.repository import ResourceKey

from tests.lambdas.prompt_catalog.conftest import ALICE, prompt_body


class OneCallAtATime:
    """Makes each DynamoDB call atomic, as the real service is.

    moto rolls a failed transaction back by restoring a copy of the whole table, which would erase a
    write another thread made meanwhile. The lock covers single calls only, so the race this test is
    about (read the counter, then write) stays open between calls.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


def test_concurrent_add_version_gets_distinct_numbers_and_loses_none(catalog):
    catalog.repo._ddb = OneCallAtATime(catalog.repo._ddb)
    conflicts = []
    transact = catalog.repo._ddb.transact_write_items

    def counting_transact(**kwargs):
        try:
            return transact(**kwargs)
        except Exception as exc:
            conflicts.append(type(exc).__name__)
            raise

    catalog.repo._ddb.transact_write_items = counting_transact
    catalog.create("prompt", "bu-a", ALICE, prompt_body())
    writers, per_writer = 6, 5

    def add(writer: int) -> list[int]:
        numbers = []
        for i in range(per_writer):
            body = {"template": f"w{writer} v{i} {{{{ who }}}}", "variables": [{"name": "who"}]}
            numbers.append(catalog.add_version("prompt", "bu-a", ALICE, "greet", body)["version"])
        return numbers

    with ThreadPoolExecutor(max_workers=writers) as pool:
        results = list(pool.map(add, range(writers)))

    numbers = sorted(n for r in results for n in r)
    assert numbers == list(range(2, 2 + writers * per_writer))
    key = ResourceKey("prompt", "bu-a", "greet")
    assert catalog.repo.get_meta(key)["latest_version"] == 1 + writers * per_writer
    templates = {
        PromptContent.model_validate(catalog.repo.get_version(key, n)["content"]).template for n in numbers
    }
    expected = {f"w{w} v{i} {{{{ who }}}}" for w in range(writers) for i in range(per_writer)}
    assert templates == expected  # every write landed under its own number
    assert set(conflicts) <= {"TransactionCanceledException"}


def test_writer_that_read_a_stale_counter_retries_with_the_next_number(catalog):
    catalog.create("prompt", "bu-a", ALICE, prompt_body())
    key = ResourceKey("prompt", "bu-a", "greet")
    real_require_meta = catalog.repo.require_meta
    competitor_done: list[bool] = []

    def read_then_lose_the_race(k):
        meta = real_require_meta(k)
        if not competitor_done:
            competitor_done.append(True)
            catalog.repo.add_version(k, {"template": "competitor", "variables": []}, ALICE, "t")
        return meta

    catalog.repo.require_meta = read_then_lose_the_race
    mine = catalog.repo.add_version(key, {"template": "mine", "variables": []}, ALICE, "t")
    assert mine == 3
    assert catalog.repo.get_version(key, 2)["content"]["template"] == "competitor"
    assert catalog.repo.get_version(key, 3)["content"]["template"] == "mine"
