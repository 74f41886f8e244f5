"""The change feed: a commit through another connection (of any process) wakes its
subscribers, on SQLite by the data version, on PostgreSQL by an announcement
(docs/decisions/0042)."""

from __future__ import annotations

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.store import dialect_of
from gateway.store.changes import ChangeFeed
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio


def _announced_write(engine: Engine) -> None:
    """What a writer that makes work elsewhere does: a write, announced."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS feed_probe (a INTEGER)"))
        conn.execute(sa.text("INSERT INTO feed_probe VALUES (1)"))
        dialect_of(engine).announce(conn)


async def test_a_commit_through_another_connection_wakes_the_subscribers(engine: Engine) -> None:
    feed = ChangeFeed(engine, interval_s=0.01)
    woken: list[str] = []
    feed.subscribe(lambda: woken.append("first"))
    feed.subscribe(lambda: woken.append("second"))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(feed.run)
        # Its first report: it watches now (SQLite read the version, PostgreSQL
        # listens), so what is committed from here on is reported.
        await eventually_async(lambda: len(woken) >= 2, "the feed's first report")
        seen = len(woken)
        for round_ in range(3):
            await anyio.to_thread.run_sync(_announced_write, engine)
            await eventually_async(
                lambda seen=seen: len(woken) >= seen + 2,
                f"the subscribers woken by commit {round_}",
            )
            seen = len(woken)
        tasks.cancel_scope.cancel()
    assert woken.count("first") == woken.count("second")


async def test_a_watch_that_fails_wakes_everyone_and_is_made_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch that breaks (the database away) must not leave anyone asleep: every
    subscriber is woken to look for itself, and the watch is made again."""
    dialect = type(dialect_of(engine))
    real = dialect.changes
    made = []

    async def breaking(self, engine: Engine, interval_s: float):  # type: ignore[no-untyped-def]
        made.append(1)
        if len(made) == 1:
            raise OSError("the database went away")
        async for change in real(self, engine, interval_s):
            yield change

    monkeypatch.setattr(dialect, "changes", breaking)
    monkeypatch.setattr("gateway.store.changes.RETRY_S", 0.01)
    feed = ChangeFeed(engine, interval_s=0.01)
    woken: list[int] = []
    feed.subscribe(lambda: woken.append(len(made)))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(feed.run)
        await eventually_async(lambda: 2 in woken, "the watch made again")
        tasks.cancel_scope.cancel()
    assert woken[0] == 1  # woken by the failure itself, before the watch was made again
