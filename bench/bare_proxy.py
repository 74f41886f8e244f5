"""A forwarding proxy with nothing else: the floor under the gateway's extra hop.

The gateway path differs from the direct one by a second server and client hop plus
the gateway's own work (JWT, policy, audit, MCP parsing). This proxy is the first part
alone, on the gateway's own stack (uvicorn with uvloop and httptools, the gateway's
keep-alive client): it passes each POST body and its MCP headers to the upstream and
the answer back, unread. Measured beside the gateway, it separates what any Python
hop costs on the machine from what the gateway adds on top.

    .venv/bin/python -m bench.bare_proxy --port 8090 --upstream http://127.0.0.1:8091/mcp
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from gateway.http_client import KeepAliveClient

# What the MCP client sends that the upstream needs to see.
_FORWARDED = (b"accept", b"content-type", b"mcp-protocol-version", b"mcp-method", b"mcp-name")


def proxy_app(upstream_url: str) -> Any:
    client = KeepAliveClient(upstream_url)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
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
    args = parser.parse_args()
    uvicorn.run(
        proxy_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
