"""The two clients the benchmarks drive every target with, and how a reply is counted.

- **raw**: a keep-alive HTTP/1.1 client posting one JSON-RPC request per call, as an
  MCP client of the 2026-07-28 era sends it (no session, no handshake; the protocol
  version and client capabilities in ``params._meta``, the `Mcp-Method`/`Mcp-Name`
  headers). It is the gateway's own `KeepAliveClient` (httptools parser, pooled
  sockets): cheap, so that on a 2-core machine the client does not take the cores
  the servers are measured on. The targets' figures use it.
- **sdk**: the MCP SDK's own `Client` in the same era, the client an agent would use;
  its figures are reported beside the raw ones, since it changes the direct baseline
  (it is several times the raw client's CPU per call, and it lists tools after the
  first call).

A call returns its *kind*, a short string the load runs count (`classify`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bench.methods import Method, Renames
from gateway.http_client import HttpTransportError, KeepAliveClient

ERA = "2026-07-28"
CLIENT_META = {
    "io.modelcontextprotocol/protocolVersion": ERA,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
DECISION_META = "io.agentgateway/decision"  # gateway.surfaces.mcp.META_KEY
FAIL_CLOSED = "gateway.fail_closed"  # gateway.policy.engine.FAIL_CLOSED_RULE

OK = "ok"
UNAVAILABLE = "unavailable"
SERVER_BUSY = -32000  # gateway.errors.SERVER_BUSY: overloaded, retry later
# One call of the benchmark: makes the request, returns its kind.
Caller = Callable[[], Awaitable[str]]


def classify(status: int, content_type: str, body: bytes) -> str:
    """The kind of one HTTP reply to a JSON-RPC call:

    - ``ok``: a result, and not a tool error;
    - ``denied:<rule>``: the gateway refused the call by policy (``denied:
      gateway.fail_closed`` when the engine did not decide in time or failed);
    - ``error:<code>``: the gateway's error code for a call it did not complete
      (``audit_unavailable``, ``upstream_timeout``…);
    - ``unavailable``: the gateway refused the call as overloaded before any decision
      (JSON-RPC -32000 with a retry-after: not a denial);
    - ``tool_error``: a result with ``isError`` and no gateway decision;
    - ``rpc:<code>``: a JSON-RPC error; ``http:<status>``: anything else."""
    if status != 200:
        return f"http:{status}"
    message = _message(content_type, body)
    if message is None:
        return "http:unparsed"
    if "error" in message:
        code = message["error"].get("code")
        return UNAVAILABLE if code == SERVER_BUSY else f"rpc:{code}"
    result = message.get("result")
    if not isinstance(result, dict):
        return "rpc:no_result"
    if not result.get("isError"):
        return OK
    meta = (result.get("_meta") or {}).get(DECISION_META)
    if not isinstance(meta, dict):
        return "tool_error"
    if meta.get("status") == "denied":
        return f"denied:{(meta.get('decision') or {}).get('rule')}"
    return f"error:{(meta.get('error') or {}).get('code')}"


def is_policy_denial(kind: str) -> bool:
    return kind.startswith("denied:")


def _message(content_type: str, body: bytes) -> dict[str, Any] | None:
    try:
        if content_type == "text/event-stream":
            # The SDK's servers answer a POST with a one-message event stream.
            data = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
            found = [json.loads(d) for d in data if d]
            return next((m for m in reversed(found) if "id" in m), None)
        message = json.loads(body)
        return message if isinstance(message, dict) else None
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def raw_caller(
    url: str, token: str, method: Method, target: Renames, *, connections: int = 64
) -> AsyncIterator[Caller]:
    http = KeepAliveClient(
        url,
        max_connections=connections,
        max_response_bytes=64 * 1024 * 1024,
        retry_unanswered=False,  # a tools/call is never sent twice
    )
    ids = itertools.count(1)
    params = {**method.params(target), "_meta": CLIENT_META}
    headers = {
        "Authorization": f"Bearer {token}",
        "MCP-Protocol-Version": ERA,
        "Mcp-Method": method.name,
    }
    if (name := method.mcp_name(target)) is not None:
        headers["Mcp-Name"] = name
    prefix = {"jsonrpc": "2.0", "method": method.name, "params": params}

    async def call() -> str:
        body = json.dumps({**prefix, "id": next(ids)}).encode()
        try:
            response = await http.request(
                "POST", "", body, headers=headers, accept="application/json, text/event-stream"
            )
        except HttpTransportError:
            return "transport"
        return classify(response.status, response.content_type, response.body)

    try:
        yield call
    finally:
        await http.aclose()


@contextlib.asynccontextmanager
async def sdk_caller(
    url: str, token: str, method: Method, target: Renames
) -> AsyncIterator[Caller]:
    # Imported here: the SDK client is only needed for its own figures.
    from tests.e2e.mcp_client import connect

    async with connect(url, token, ERA) as client:
        params = method.params(target)

        async def call() -> str:
            try:
                result = await method.sdk(client, params)
            except Exception as exc:  # counted, not raised: the run goes on
                return f"sdk:{type(exc).__name__}"
            if not getattr(result, "is_error", False):
                return OK
            meta = (getattr(result, "meta", None) or {}).get(DECISION_META) or {}
            if meta.get("status") == "denied":
                return f"denied:{(meta.get('decision') or {}).get('rule')}"
            return f"error:{(meta.get('error') or {}).get('code')}" if meta else "tool_error"

        yield call
