"""The JSON log line: one object per line, the request id and a record's extra fields,
timestamps as datetime writes them (the formatter's cached second must not drift)."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime

import pytest

from gateway.logs import REQUEST_ID, JsonFormatter, _timestamp


@pytest.mark.parametrize(
    "created",
    [0.0, 1_764_000_000.0, 1_764_000_000.9995, 1_764_000_000.9999996, 558209896.8699998],
)
def test_timestamps_are_what_datetime_writes(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert _timestamp(created) == expected


def test_timestamps_of_many_instants_in_any_order_are_what_datetime_writes() -> None:
    rng = random.Random(26)
    base = 1_764_000_000
    for _ in range(20_000):
        created = rng.choice([base + rng.random() * 3, rng.uniform(0, 2e9)])
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert _timestamp(created) == expected, created


def test_a_line_carries_the_message_the_request_id_and_the_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "gateway.pipeline",
            "levelname": "INFO",
            "msg": "%s %s",
            "args": ("mcp", "ok"),
            "created": 1_764_000_000.25,
            "tool": "up__echo",
            "duration_ms": 1.5,
            "when": datetime(2026, 1, 1, tzinfo=UTC),  # not JSON: written as its str()
        }
    )
    token = REQUEST_ID.set("req_0123")
    try:
        line = JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2025-11-24T16:00:00.250+00:00",
        "level": "info",
        "logger": "gateway.pipeline",
        "msg": "mcp ok",
        "request_id": "req_0123",
        "tool": "up__echo",
        "duration_ms": 1.5,
        "when": "2026-01-01 00:00:00+00:00",
    }
