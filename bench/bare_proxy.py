"""A forwarding proxy with nothing else: the floor under the gateway's extra hop.

The gateway path differs from the direct one by a second server and client hop plus
the gateway's own work (JWT, policy, audit, MCP parsing). This proxy is the first part
alone, on the gateway's own stack (uvicorn with uvloop and httptools, the gateway's
keep-alive client): it passes each POST body and its MCP headers to the upstream and
the answer back, unread. Measured beside the gateway, it separates what any Python
hop costs on the machine from what the gateway adds on top.

With ``--commit-to FILE`` it also does the one thing the gateway may not skip before
it forwards (DESIGN §9: the attempt and the decision durable first): each body is
written twice (standing for the two records) to an SQLite file in the gateway's mode
(WAL, ``synchronous=FULL``) and committed on the event loop before the request goes
on, as the gateway commits at c=1. Nothing is parsed or decided. What that proxy
costs over the direct call at c=1 is the least a gateway keeping §9 in SQLite costs here
(at c=16 it is no floor: it commits each call alone, where the gateway groups them).

    .venv/bin/python -m bench.bare_proxy --port 8090 --upstream http://127.0.0.1:8091/mcp \
        [--commit-to /tmp/floor.db]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.pool import PoolProxiedConnection

from gateway.http_client import KeepAliveClient
from gateway.store import create_engine

# What the MCP client sends that the upstream needs to see.
_FORWARDED = (b"accept", b"content-type", b"mcp-protocol-version", b"mcp-method", b"mcp-name")


def durable_log(path: Path) -> PoolProxiedConnection:
    """A connection to an SQLite file made by the gateway's own engine (so in its
    durable mode: WAL, ``synchronous=FULL``, no implicit transactions), with one table
    of bodies. Kept checked out for the proxy's life."""
    connection = create_engine(f"sqlite:///{path}").raw_connection()
    connection.driver_connection.execute(
        "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, body BLOB)"
    )
    return connection


def proxy_app(upstream_url: str, commit_to: Path | None = None) -> Any:
    client = KeepAliveClient(upstream_url)
    kept = durable_log(commit_to) if commit_to is not None else None
    log = kept.driver_connection if kept is not None else None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            await client.aclose()
            if kept is not None:
                kept.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if log is not None:
            log.execute("BEGIN IMMEDIATE")
            log.executemany("INSERT INTO records (body) VALUES (?)", [(bytes(body),)] * 2)
            log.execute("COMMIT")
        headers = {
            name.decode(): value.decode()
            for name, value in scope["headers"]
            if name in _FORWARDED and name != b"accept"
        }
        accept = dict(scope["headers"]).get(b"accept", b"application/json").decode()
        response = await client.request(
            scope["method"], "", bytes(body) or None, headers=headers, accept=accept
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(b"content-type", response.content_type.encode() or b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument(
        "--commit-to", type=Path, help="an SQLite file each body is committed to first"
    )
    args = parser.parse_args()
    uvicorn.run(
        proxy_app(args.upstream, args.commit_to),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
