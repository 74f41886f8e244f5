"""The ``mcp_tasks`` rows of upstreams' own tasks (docs/decisions/0030), on both
databases: the third kind holds the upstream's task id, is read only by its owner,
and the call's outcome is claimed by exactly one of many concurrent fetches."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from gateway.surfaces.mcp_task_store import TaskStore, new_task_id
from gateway.types import Identity

ALICE = Identity("https://issuer.example", "alice")
MALLORY = Identity("https://issuer.example", "mallory")


def _upstream_task(store: TaskStore) -> str:
    task_id = new_task_id()
    store.insert(
        task_id=task_id,
        kind="upstream",
        owner=ALICE,
        request_id="req_1",
        tool="up__research",
        endpoint=None,
        ttl_ms=60_000,
        upstream_task_id="up-42",
    )
    return task_id


def test_an_upstream_task_row_is_its_owners_alone(engine: Engine) -> None:
    store = TaskStore(engine)
    task_id = _upstream_task(store)
    row = store.get(task_id, ALICE)
    assert row is not None and row.kind == "upstream"
    assert row.upstream_task_id == "up-42" and row.outcome_at is None
    assert store.get(task_id, MALLORY) is None
    assert [r.id for r in store.list(ALICE, after=None, limit=10)] == [task_id]
    assert store.list(MALLORY, after=None, limit=10) == []


def test_the_outcome_is_claimed_once_among_concurrent_fetches(engine: Engine) -> None:
    store = TaskStore(engine)
    task_id = _upstream_task(store)
    wins: list[bool] = []
    start = threading.Barrier(8)

    def fetch() -> None:
        start.wait()
        wins.append(TaskStore(engine).claim_outcome(task_id))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(wins) == [False] * 7 + [True]
    claimed = store.get(task_id, ALICE)
    assert claimed is not None and claimed.outcome_at is not None
    assert store.claim_outcome(task_id) is False
