"""A loopback proxy that adds the bearer token, for MCP clients that cannot send one.

    BEARER_PROXY_TOKEN=<jwt> python -m tests.support.bearer_proxy PORT TARGET [PREFIX]

Listens on 127.0.0.1:PORT and forwards every request, any method and path, to TARGET
(the gateway's base URL, e.g. ``http://127.0.0.1:8080``) with ``Authorization: Bearer
<jwt>`` added. The token comes from the environment, never from a URL. Everything else
passes unchanged, ``Host`` and ``Origin`` included (the conformance suite's
dns-rebinding-protection scenario sends a foreign Host and expects the gateway itself
to refuse it), and responses stream back as they arrive (event streams carry progress
and log notifications before the result).

With PREFIX (e.g. ``conf``), the proxy lets a client written for one unprefixed server
talk to the aggregated ``/mcp``: a ``tools/call`` name (and its ``Mcp-Name`` header)
gains ``PREFIX__``; a ``tools/list`` result keeps only that upstream's tools, with the
prefix removed. Only tool names are rewritten: resources, prompts and the rest pass as
they are.

Who uses it: the official conformance suite (``@modelcontextprotocol/conformance`` has
no option for an auth header) in tests/e2e/test_mcp_conformance.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

TOKEN_ENV = "BEARER_PROXY_TOKEN"
# Hop-by-hop headers (RFC 9110 §7.6.1) and what httpx sets itself.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "authorization",
}


class ToolPrefix:
    """Rewrites tool names between a client of one upstream and the aggregated /mcp."""

    def __init__(self, upstream: str) -> None:
        self.prefix = f"{upstream}__"

    def request(self, body: bytes, headers: dict[str, str]) -> tuple[bytes, str | None]:
        """The rewritten body, and the method of the (first) request in it."""
        try:
            message = json.loads(body)
        except ValueError:
            return body, None
        messages = message if isinstance(message, list) else [message]
        method = None
        for item in messages:
            if not isinstance(item, dict):
                continue
            method = method or item.get("method")
            params = item.get("params")
            if item.get("method") == "tools/call" and isinstance(params, dict):
                if isinstance(params.get("name"), str):
                    params["name"] = self.prefix + params["name"]
        for key in list(headers):
            if key.lower() == "mcp-name" and method == "tools/call":
                # Whitespace around the value stays where it was (the suite sends some
                # on purpose: a server must ignore it, RFC 9110 §5.5).
                value = headers[key]
                name = value.strip()
                start = value.index(name) if name else len(value)
                headers[key] = value[:start] + self.prefix + value[start:]
        return json.dumps(message).encode(), method

    def response(self, message: Any) -> Any:
        result = message.get("result") if isinstance(message, dict) else None
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            result["tools"] = [
                {**tool, "name": tool["name"][len(self.prefix) :]}
                for tool in result["tools"]
                if isinstance(tool, dict) and str(tool.get("name", "")).startswith(self.prefix)
            ]
        return message


class BearerProxy:
    def __init__(self, target: str, token: str, prefix: ToolPrefix | None) -> None:
        self.target = target.rstrip("/")
        self.token = token
        self.prefix = prefix
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["authorization"] = f"Bearer {self.token}"
        method = None
        if self.prefix is not None and body:
            body, method = self.prefix.request(body, headers)
        url = self.target + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        upstream = await self.client.send(
            self.client.build_request(request.method, url, headers=headers, content=body),
            stream=True,
        )
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        content_type = upstream.headers.get("content-type", "")
        rewrite = self.prefix is not None and method == "tools/list"
        if rewrite and content_type.startswith("application/json"):
            data = await upstream.aread()
            await upstream.aclose()
            try:
                data = json.dumps(self._rewrite(json.loads(data))).encode()
            except ValueError:
                pass
            await Response(data, upstream.status_code, out_headers)(scope, receive, send)
            return
        chunks = self._sse(upstream) if rewrite else upstream.aiter_raw()
        response = StreamingResponse(
            chunks,
            status_code=upstream.status_code,
            headers=out_headers,
            background=BackgroundTask(upstream.aclose),
        )
        await response(scope, receive, send)

    def _rewrite(self, message: Any) -> Any:
        assert self.prefix is not None
        if isinstance(message, list):
            return [self.prefix.response(m) for m in message]
        return self.prefix.response(message)

    async def _sse(self, upstream: httpx.Response) -> AsyncIterator[bytes]:
        """An event stream, one event at a time, with the JSON of each rewritten."""
        buffer = ""
        async for text in upstream.aiter_text():
            buffer += text.replace("\r\n", "\n")
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                yield (self._event(event) + "\n\n").encode()
        if buffer:
            yield self._event(buffer).encode()

    def _event(self, event: str) -> str:
        lines = []
        for line in event.split("\n"):
            if line.startswith("data:"):
                try:
                    line = "data: " + json.dumps(self._rewrite(json.loads(line[5:])))
                except ValueError:
                    pass
            lines.append(line)
        return "\n".join(lines)


def main(port: int, target: str, prefix: str | None) -> None:
    token = os.environ[TOKEN_ENV]
    app = BearerProxy(target, token, ToolPrefix(prefix) if prefix else None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
