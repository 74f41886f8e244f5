"""The target of ``logging/setLevel`` (`gateway.upstreams.targets`): the level at which
a calling session wants upstream log messages. It is decided and audited by the one
pipeline like every method that reaches upstreams, and forwarding it passes the level
on to the session's own upstream sessions, all at once (docs/decisions/0034)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidArguments
from gateway.operations import LOG_LEVELS, Operation
from gateway.types import CallMethod, McpResult, Principal, ToolResult


@dataclass(frozen=True)
class Scope:
    """What a target that is no single upstream's stands for where the pipeline names
    an upstream (its metrics): the endpoint's upstream, or ``*`` for every one."""

    name: str


class NoCredentials:
    """A target that sends nothing on the caller's behalf needs no upstream headers."""

    def headers_for(self, principal: Principal) -> dict[str, str]:
        return {}


# Passes a calling session's level on to its upstream sessions: (session id, level,
# the upstream or None for every one). Never raises for an upstream's failure.
SetSessionLevel = Callable[[str, str, str | None], Awaitable[None]]


@dataclass(frozen=True)
class LogLevelTarget:
    """The level at which a calling session wants upstream log messages
    (``logging/setLevel``), on one upstream's endpoint or every upstream's (``/mcp``).
    Policy sees the upstream (``server``, null for every one) and the level; forwarding
    passes it on to the session's own upstream sessions at once (docs/decisions/0034);
    a sessionless caller has none, and forwarding then sends nothing."""

    server: str | None
    set_level: SetSessionLevel
    config: Scope
    credentials: NoCredentials
    method: CallMethod = "logging/setLevel"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def definition_hash(self) -> None:
        return None

    def policy_resource(self) -> dict[str, Any]:
        return {"kind": "log_level", "server": self.server}

    def validate(self, arguments: dict[str, Any]) -> None:
        if set(arguments) != {"level"} or arguments["level"] not in LOG_LEVELS:
            raise InvalidArguments(
                "logging/setLevel takes a level, one of " + ", ".join(LOG_LEVELS),
                details={"levels": list(LOG_LEVELS)},
            )

    async def forward(self, operation: Operation, headers: dict[str, str]) -> McpResult:
        # A principal's upstream sessions are told no level: at 2026-07-28 each request
        # asks for its own (docs/decisions/0043).
        if operation.session is not None and not operation.session.for_principal:
            await self.set_level(operation.session.id, operation.arguments["level"], self.server)
        return McpResult(self.method, {})

    def outcome_fields(self, result: ToolResult | McpResult) -> dict[str, Any]:
        return {}
