"""The requests in flight on one upstream connection (`InFlight`), each with its
`ClientInput` and log sink: where what the upstream asks or logs without naming a
caller goes, and whether the connection is idle.

`mcp_requests.run` enters every request and leaves it when it ends; the input callbacks
(`mcp_client_input.relay_input`) and the logging callback of a calling session's own
upstream session (`mcp_connection`) ask it whose a request or message naming no caller
is; `mcp_caller_sessions` hears when an upstream session held for a principal is idle.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.operations import ClientInput, LogSink


class InFlight:
    """The requests in flight on one upstream connection, with their `ClientInput`s
    and log sinks.

    Over stdio (and on the standalone stream) a request or log message of the upstream
    carries no caller: the SDK runs the callback outside any caller's context. It is
    attributed to the one request in flight when there is exactly one, and refused
    (a log message: not relayed) otherwise: never guessed between two callers."""

    def __init__(self) -> None:
        self._flights: dict[int, tuple[ClientInput | None, LogSink | None]] = {}
        self._next = 0
        # An upstream session held for one caller only (`mcp_caller_sessions`): how the
        # upstream's requests are answered while none of that caller's is in flight.
        # A calling session's: its standalone stream, set once the client said its
        # roots changed (the upstream then asks for them again). A principal's: a
        # refusal under the relay's rule (decided by the gateway, audited).
        self.standalone: ClientInput | None = None
        # Told when the last request in flight has left (an idle upstream session
        # held for a principal is closed after a while: `mcp_caller_sessions`).
        self.on_idle: Callable[[], None] | None = None

    def enter(self, client_input: ClientInput | None, log_sink: LogSink | None = None) -> int:
        self._next += 1
        self._flights[self._next] = (client_input, log_sink)
        return self._next

    def leave(self, token: int) -> None:
        if self._flights.pop(token, None) is not None and not self._flights and self.on_idle:
            self.on_idle()

    @property
    def busy(self) -> bool:
        """Whether any request is in flight."""
        return bool(self._flights)

    def sole(self) -> ClientInput | None:
        if not self._flights:
            return self.standalone
        if len(self._flights) != 1:
            return None
        return next(iter(self._flights.values()))[0]

    def sole_log(self) -> LogSink | None:
        """The log sink of the one request in flight (its level, its stream), if there
        is exactly one; None otherwise."""
        if len(self._flights) != 1:
            return None
        return next(iter(self._flights.values()))[1]
