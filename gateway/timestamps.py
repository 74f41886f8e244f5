"""How the gateway writes a moment as text: one format for everything people and
auditors read (audit leaves, policy input, run views), so that one instant always reads
the same wherever it appears.

``2026-11-21T10:00:00.123Z``: RFC 3339, UTC, milliseconds, truncated (never rounded
up into the next second). It is part of the audit leaf format (version 1): changing it
needs a new leaf version.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    """``moment`` in UTC with millisecond precision (truncated). Requires a
    timezone-aware datetime: a naive one would silently be read as local time."""
    if moment.tzinfo is None:
        raise ValueError("timestamps need a timezone-aware datetime")
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def utc_now() -> str:
    return format_utc(datetime.now(UTC))


def format_epoch(epoch: float | None) -> str | None:
    """A POSIX time (seconds, e.g. from the database clock) as `format_utc` text."""
    return None if epoch is None else format_utc(datetime.fromtimestamp(epoch, UTC))
