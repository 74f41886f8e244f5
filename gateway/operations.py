"""An `Operation`: one request that reaches an upstream, from any surface, and what it
carries between the caller and that upstream while it runs: the caller's progress
callback, where the upstream's log messages go (`LogSink`), how the upstream's
requests for client input reach the caller (`ClientInput`), the caller's own session
at the gateway (`CallerSession`) and a request to run it as the upstream's task
(`TaskRequest`). Plain frozen dataclasses, like the words of `gateway.types` they are
built from (the principal, the client, the method, the transport).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.types import CallMethod, ClientInfo, Principal, Transport

# Called with (progress, total, message) while a call waits or runs.
ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]

# MCP log levels (RFC 5424), lowest first.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


@dataclass(frozen=True)
class LogSink:
    """Where an upstream's log messages (``notifications/message``) sent while an
    operation runs go: back to the client that made it, at ``level`` and above."""

    level: str  # one of LOG_LEVELS
    send: Callable[[str, Any, str | None], Awaitable[None]]  # (level, data, logger)

    def wants(self, level: str) -> bool:
        if level not in LOG_LEVELS or self.level not in LOG_LEVELS:
            return False
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(self.level)


# What an upstream may ask the client while it answers a request (docs/mcp.md,
# "Requests for client input"): each is relayed under policy, its method the action.
InputMethod = Literal["elicitation/create", "sampling/createMessage", "roots/list"]
INPUT_METHODS: tuple[InputMethod, ...] = (
    "elicitation/create",
    "sampling/createMessage",
    "roots/list",
)


@dataclass(frozen=True)
class InputRequest:
    """One request of an upstream for client input, as MCP spells its params."""

    method: InputMethod
    params: dict[str, Any]


# Asks the calling client the requests of one upstream (keyed as the upstream keyed
# them) and returns its answers (MCP result documents) under the same keys; raises
# `gateway.errors.ClientInputRefused` when they may not or cannot be asked.
InputAsk = Callable[[str, dict[str, InputRequest]], Awaitable[dict[str, dict[str, Any]]]]


@dataclass(frozen=True)
class ClientInput:
    """How an operation's upstream may ask the calling client for input: ``ask`` (under
    policy, `gateway.relays`) and the ``capabilities`` the client declared that the
    gateway can relay (MCP spelling: ``elicitation``, ``sampling``, ``roots``), which
    a 2026-07-28 upstream is told per request."""

    ask: InputAsk
    capabilities: dict[str, Any]
    # Decides (and records) a request without asking it: for the URL elicitations an
    # upstream names in a URL-elicitation-required error (-32042), which the client
    # receives as that error. Raises `ClientInputRefused` when one is refused.
    check: Callable[[str, InputRequest], Awaitable[None]]


@dataclass(frozen=True)
class CallerSession:
    """Who a request to a 2025-11-25 upstream is made for, when the upstream must see
    that caller alone: the calling client's session at the gateway (a 2025-11-25
    ``Mcp-Session-Id``, docs/decisions/0034), or, for a sessionless 2026-07-28 request,
    its principal (``for_principal``, docs/decisions/0043). Such an upstream is reached,
    for that caller, on an upstream session of its own, opened with ``capabilities``
    in its handshake: what the client declared (at its ``initialize``, or in the
    request) that the gateway relays (MCP spelling: ``elicitation``, ``sampling``,
    ``roots``). ``id`` names the caller (requests with the same id share the upstream
    session). ``logs``: where log messages that upstream session sends outside any
    request go (the session's own stream), at the level the session set now; None
    while it asked for none, and always for a principal (its one request in flight
    there gets them instead). ``alive``: whether the session still is (a request in
    flight can outlive its session's end, and must not open an upstream session that
    nothing would close). ``outside``: for a principal, builds how a request of the
    upstream outside any of its requests is answered (refused, and recorded, by the
    relay); called only when a 2025-11-25 upstream is reached."""

    id: str
    capabilities: dict[str, Any]
    logs: Callable[[], LogSink | None] = field(default=lambda: None, compare=False)
    alive: Callable[[], bool] = field(default=lambda: True, compare=False)
    # No session whose end closes its upstream sessions: they close when idle.
    for_principal: bool = False
    outside: Callable[[], ClientInput] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TaskRequest:
    """Run a ``tools/call`` as the upstream's task, kept ``ttl_ms`` (None: its default)."""

    ttl_ms: int | None = None


@dataclass(frozen=True)
class Operation:
    """One request that reaches an upstream, from any surface.

    ``target`` is the gateway's name of what it acts on: a tool (``<upstream>__<tool>``)
    for ``tools/call``, a prompt (``<upstream>__<prompt>``) for ``prompts/get``, a
    gateway resource URI (``gateway:<upstream>/<uri>``) for ``resources/read``, and for
    ``completion/complete`` the prompt or the resource template (its gateway URI
    template) whose argument is completed. ``arguments`` are the tool's or the
    prompt's arguments, nothing for a read, and for a completion
    ``{"argument": {"name", "value"}, "context": {"arguments": {…}}}``. For
    ``logging/setLevel`` the target is the endpoint's upstream (``/mcp/{upstream}``) or
    ``*`` (``/mcp``: every upstream), the arguments ``{"level": …}``.
    """

    principal: Principal
    method: CallMethod
    target: str
    arguments: dict[str, Any]
    transport: Transport
    request_id: str
    client: ClientInfo = ClientInfo()
    run_id: str | None = None
    step_id: str | None = None
    idempotency_key: str | None = None
    progress: ProgressCallback | None = None
    # Upstream log messages during this operation go here (None: not relayed).
    log: LogSink | None = None
    # How the upstream's requests for client input reach the caller (None: refused).
    client_input: ClientInput | None = None
    # The caller's session at the gateway, whose own upstream sessions this operation
    # uses (2025-11-25 upstreams); None: sessionless, the shared connection.
    session: CallerSession | None = None
    # The longest the caller will wait for a human decision (REST ``Prefer: wait=N``);
    # None: the configured hold. Never lengthens the configured hold.
    hold_s: float | None = None
    # The caller's trace context (an OpenTelemetry ``Context``, `gateway.telemetry`)
    # when it came with the request rather than in the current task; None otherwise,
    # and always while tracing is off.
    trace: Any = None
    # A ``tools/call`` the caller wants run as the upstream's own task (MCP tasks,
    # passed through: docs/decisions/0030); None: a plain call.
    task: TaskRequest | None = None
