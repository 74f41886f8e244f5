"""The arithmetic of the comparison: ratios to the direct call, spreads over rounds,
and the order in which targets take their turn.

Figures compare only within one interleaved run: every ratio divides a target's figure
by the direct call's figure *of the same round*, and the spread over rounds (min,
median, max) says how far the machine moved the ratio. Kept free of I/O so that it is
tested (tests/unit/bench/test_stats.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in [0, 1]) of non-empty ``samples``."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is outside [0, 1]")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is zero
    (a round in which the direct call measured nothing gives no ratio, not infinity)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def spread(values: Sequence[float | None]) -> dict[str, float] | None:
    """Min, median and max of the values that exist; None if none does."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "min": min(present),
        "median": statistics.median(present),
        "max": max(present),
        "rounds": len(present),
    }


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` starting at position ``round_index`` (mod len): over as many rounds
    as there are items, each item goes first once, so whatever a turn's position
    costs (a warm cache, a neighbour's burst) falls on every target alike."""
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def per_call_ms(cpu_seconds: float, calls: int) -> float | None:
    """CPU milliseconds per call, None for a run without calls."""
    if calls <= 0:
        return None
    return cpu_seconds * 1000 / calls


def fmt_spread(s: dict[str, float] | None, digits: int = 2, unit: str = "×") -> str:
    """``median unit (min–max)`` for a table cell; a dash when there is nothing."""
    if s is None:
        return "–"
    median, low, high = (f"{s[k]:.{digits}f}" for k in ("median", "min", "max"))
    return f"{median}{unit} ({low}–{high})"
