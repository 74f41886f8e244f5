"""Migration 0007 turns tool pins into definition pins, on SQLite and PostgreSQL: rows
written by the previous schema are tools, keyed by (kind, name), and name their
upstream, read off their stored definition."""

from __future__ import annotations

import json

import sqlalchemy as sa

from gateway.store import create_engine, migrate
from gateway.upstreams.pins import PinStatus, PinStore

COMMON = "'2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'"


def test_existing_tool_pins_become_tool_definitions_of_their_upstream(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        migrate(engine, "0006")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tool_pins (tool, definition_hash, definition, status, "
                    f"first_seen, changed_at, version) VALUES ('my__up__echo', 'h', :doc, "
                    f"'pinned', {COMMON}, 1)"
                ),
                {"doc": json.dumps({"name": "echo"})},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO tool_pins (tool, definition_hash, status, pending_hash, "
                    "pending_definition, first_seen, changed_at, version) VALUES "
                    f"('svc__write', 'h', 'quarantined', 'p', :doc, {COMMON}, 2)"
                ),
                {"doc": json.dumps({"name": "write"})},
            )
        migrate(engine)
        rows = PinStore(engine).read()
        assert set(rows) == {("tool", "my__up__echo"), ("tool", "svc__write")}
        echo = rows[("tool", "my__up__echo")]
        assert (echo.upstream, echo.status, echo.version) == ("my__up", PinStatus.PINNED, 1)
        assert rows[("tool", "svc__write")].upstream == "svc"
        # A prompt may now share its name with a tool.
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tool_pins (kind, name, upstream, definition_hash, status, "
                    f"first_seen, changed_at, version) VALUES ('prompt', 'svc__write', 'svc', "
                    f"'h', 'pinned', {COMMON}, 3)"
                )
            )
        assert ("prompt", "svc__write") in PinStore(engine).read()
    finally:
        engine.dispose()
