"""bench/bare_proxy.py with ``--commit-to``: the durable floor the benchmarks measure
(a hop that commits each body before it forwards) does what it is said to do."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from bench.clients import CLIENT_META, ERA
from bench.targets import start_proxy
from tests.support.processes import McpUpstreamServer


def test_each_body_is_committed_twice_in_wal_mode_and_answered(tmp_path: Path) -> None:
    upstream = McpUpstreamServer.start(tmp_path)
    database = tmp_path / "floor.db"
    proxy, url = start_proxy(tmp_path, upstream.url, database)
    try:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "echo",
                "arguments": {"text": "through the floor"},
                "_meta": CLIENT_META,
            },
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": ERA,
            "Mcp-Method": "tools/call",
            "Mcp-Name": "echo",
        }
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        assert response.status_code == 200
        assert "through the floor" in response.text
        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT body FROM records ORDER BY seq").fetchall()
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        assert [json.loads(row[0])["params"]["arguments"] for row in rows] == [
            {"text": "through the floor"}
        ] * 2
        assert mode == "wal"
    finally:
        proxy.stop()
        upstream.process.stop()
