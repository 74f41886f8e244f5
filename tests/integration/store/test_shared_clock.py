"""The clock replicas share: the database's, read once and then kept as an offset, on
SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, event

from gateway.store import create_engine
from gateway.store.shared_clock import SharedClock
from tests.support.processes import free_port


def checkouts(engine: Engine) -> list[int]:
    counted = [0]

    @event.listens_for(engine, "checkout")
    def _count(*_: Any) -> None:
        counted[0] += 1

    return counted


def test_it_reads_the_databases_clock_once_then_keeps_its_offset(engine: Engine) -> None:
    counted = checkouts(engine)
    clock = SharedClock(engine)
    first = clock()
    # The database runs on this machine: the same clock, up to how the reading went.
    assert abs(first - time.time()) < 60
    assert counted == [1]
    assert clock() >= first
    assert counted == [1]  # no query per reading

    every_time = SharedClock(engine, resync_s=0)
    every_time()
    every_time()
    assert counted == [3]


def test_an_unreachable_database_fails_the_reading() -> None:
    unreachable = create_engine(f"postgresql://gateway@127.0.0.1:{free_port()}/gateway")
    with pytest.raises(Exception, match=r"(?i)connect"):
        SharedClock(unreachable)()
    unreachable.dispose()
