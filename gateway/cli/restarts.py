"""When the supervisor of `gateway serve --processes N` replaces a server process.

A process that exits once the serve runs (a crash, `kill -9`, a replacement that
could not start) is replaced, each slot at most ``limit`` times within ``window_s``
(`server.restarts`): beyond that the serve stops with `CrashLoop`, naming the slot and
every exit seen, since a process that keeps dying needs a person and a loop would hide
it. The first replacement within the window starts at once (a lone crash costs only a
start); each further one waits twice as long as the one before, so a replacement that
cannot start does not spin on the machine its healthy siblings serve from.

Time is read from an injected `Clock` (docs: gateway/clock.py), so the window and the
backoff are checked by moving time by hand.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import RestartsConfig


class ProcessFailed(GatewayError):
    """A server process exited before it was ready at the serve's start: the serve
    stops (a restart would fail the same way)."""

    code = "process_failed"


class CrashLoop(ProcessFailed):
    """A slot's process exited more often than `server.restarts` allows: the serve
    stops."""

    code = "crash_loop"


@dataclass
class Restarts:
    """The exits of each slot within the window, and what they allow next."""

    config: RestartsConfig
    clock: Clock
    _exits: dict[int, deque[tuple[float, str]]] = field(default_factory=dict)

    def exited(self, slot: int, status: str) -> float:
        """Records that ``slot``'s process exited with ``status`` (as `_status` words
        it); the seconds to wait before its replacement starts. Raises CrashLoop when
        the slot has already been replaced ``limit`` times within the window."""
        now = self.clock()
        exits = self._exits.setdefault(slot, deque())
        exits.append((now, status))
        while exits and exits[0][0] <= now - self.config.window_s:
            exits.popleft()
        replaced = len(exits) - 1  # replacements already made within the window
        if replaced >= self.config.limit:
            seen = ", ".join(s for _, s in exits)
            raise CrashLoop(
                f"gateway process {slot} exited {len(exits)} times within "
                f"{self.config.window_s:g} s ({seen}); it was replaced {replaced} times, "
                f"server.restarts.limit allows {self.config.limit}: stopping the serve"
            )
        if replaced == 0:
            return 0.0
        return min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (replaced - 1))
