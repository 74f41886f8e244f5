"""The arithmetic of limits, apart from any database: keys, windows, when to retry.

Windows are fixed and aligned to the epoch on the shared clock: a limit of N calls per
W seconds counts the calls whose admission time falls in ``[k·W, (k+1)·W)``. Every
replica computes the same window from the same clock, so one row per key holds the
count (docs/decisions/0031 says why fixed windows, and what they allow at a window's
edge).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

from gateway.canonical import jcs
from gateway.types import Limit

LimitKind = Literal["calls", "concurrent"]
LIMIT_KINDS: tuple[LimitKind, ...] = ("calls", "concurrent")

# A refused concurrent call is told to retry after this long: when a slot comes free
# is not known in advance (a call's duration is the upstream's).
CONCURRENT_RETRY_S = 1


def limit_key(limit: Limit) -> str:
    """The counter a limit counts on: the SHA-256 of its name and scope (JCS), so that
    limits equal in name and scope share it, whatever their numbers, and the scope
    (which may name a person) is not stored in the clear."""
    return hashlib.sha256(jcs([limit.name, limit.scope])).hexdigest()


def window_start(now: float, window_s: int) -> float:
    """The start of the fixed window ``now`` is in."""
    return math.floor(now / window_s) * window_s


def window_retry_after(start: float, window_s: int, now: float) -> int:
    """Whole seconds until the window starting at ``start`` ends (at least 1)."""
    return max(1, math.ceil(start + window_s - now))


@dataclass(frozen=True)
class Refusal:
    """Which limit refused a call, and when to try again."""

    limit: Limit
    kind: LimitKind
    retry_after_s: int

    @property
    def maximum(self) -> int:
        value = self.limit.calls if self.kind == "calls" else self.limit.concurrent
        assert value is not None
        return value

    def describe(self) -> str:
        if self.kind == "calls":
            what = f"{self.maximum} calls per {self.limit.window_s} s"
        else:
            what = f"{self.maximum} concurrent calls"
        return (
            f"limit {self.limit.name!r} ({what}) is reached; the call was not executed — "
            f"retry after {self.retry_after_s} s"
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "limit": self.limit.name,
            "kind": self.kind,
            "max": self.maximum,
            "scope": dict(self.limit.scope),
            "retry_after_s": self.retry_after_s,
        }
        if self.kind == "calls":
            out["window_s"] = self.limit.window_s
        return out
