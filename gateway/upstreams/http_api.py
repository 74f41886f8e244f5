"""Plain HTTP APIs described in config, offered as tools.

Each configured tool maps to one request: path placeholders are filled from the
arguments of the same name (URL-encoded, so an argument cannot add path segments),
the remaining arguments go in the JSON body, or the query string for GET and DELETE.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import anyio.abc
import httpx

from gateway.config import HttpTool, HttpUpstream
from gateway.errors import InvalidArguments, UpstreamTimeout, UpstreamUnavailable
from gateway.operations import CallerSession, ClientInput, LogSink, ProgressCallback
from gateway.types import ToolResult
from gateway.upstreams.base import Reconnected, ResourceUpdated, UpstreamStatus
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_definitions import UpstreamOfferings

_BODYLESS = {"GET", "DELETE"}


class HttpApiUpstream:
    def __init__(
        self, config: HttpUpstream, *, static_headers: dict[str, str], connect_timeout_s: float
    ):
        self.name = config.name
        self._config = config
        self._tools = {t.name: t for t in config.tools}
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            headers={**config.headers, **static_headers},
            timeout=httpx.Timeout(config.timeout_s, connect=connect_timeout_s),
            follow_redirects=False,  # a redirect could carry our credential elsewhere
        )
        self._last_error: str | None = None

    @property
    def status(self) -> UpstreamStatus:
        return UpstreamStatus(connected=self._last_error is None, detail=self._last_error)

    async def start(
        self,
        task_group: anyio.abc.TaskGroup,
        on_reconnect: Reconnected,
        on_updated: ResourceUpdated | None = None,
    ) -> None:
        return None  # nothing to connect: each call is one request

    async def close(self) -> None:
        await self._client.aclose()

    async def list_tools(self) -> list[UpstreamTool]:
        return [
            UpstreamTool(
                name=t.name,
                description=t.description,
                input_schema=t.input_schema,
                output_schema=t.output_schema,
                annotations=t.annotations or None,
            )
            for t in self._config.tools
        ]

    async def list_offerings(self) -> UpstreamOfferings:
        return UpstreamOfferings([], [], [])  # tools only

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        headers: dict[str, str],
        idempotency_key: str | None,
        progress: ProgressCallback | None,
        log: LogSink | None,
        timeout_s: float,
        client_input: ClientInput | None = None,  # an HTTP API never asks the client anything
        session: CallerSession | None = None,  # nor keeps sessions
    ) -> ToolResult:
        tool = self._tools[name]
        path, rest = _fill_path(tool, arguments)
        request_headers = dict(headers)
        if idempotency_key:
            request_headers["Idempotency-Key"] = idempotency_key
        body: dict[str, Any] = {}
        if tool.method in _BODYLESS:
            body["params"] = {k: _query_value(v) for k, v in rest.items()}
        else:
            body["json"] = rest
        try:
            response = await self._client.request(
                tool.method, path, headers=request_headers, timeout=timeout_s, **body
            )
        except httpx.TimeoutException:
            self._last_error = None  # slow is not down
            raise UpstreamTimeout(
                f"upstream {self.name} did not answer {tool.method} {path} within {timeout_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            raise UpstreamUnavailable(
                f"upstream {self.name} is unreachable: {self._last_error}"
            ) from None
        self._last_error = None
        return _to_result(response)


def _fill_path(tool: HttpTool, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # dict.fromkeys: a placeholder used twice is filled (and popped) once.
    fields = dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(tool.path) if f)
    rest = dict(arguments)
    values = {}
    for field in fields:
        # The input schema should make path fields required; if not, the call is refused
        # rather than sent to a different URL.
        if field not in rest:
            raise InvalidArguments(f"argument {field!r} is required to build the request path")
        value = quote(str(rest.pop(field)), safe="")
        if value in (".", ".."):
            # Dot segments are removed by URL normalization (httpx does it): "/users/.."
            # would climb out of the path; percent-encoded dots are kept as they are.
            value = value.replace(".", "%2E")
        values[field] = value
    return tool.path.format(**values), rest


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _to_result(response: httpx.Response) -> ToolResult:
    text = response.text
    structured: dict[str, Any] | None = None
    if "json" in response.headers.get("content-type", ""):
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            structured = parsed
    if response.is_success:
        return ToolResult(content=[{"type": "text", "text": text}], structured_content=structured)
    return ToolResult(
        content=[{"type": "text", "text": f"HTTP {response.status_code}: {text}"}],
        structured_content=structured,
        is_error=True,
    )
