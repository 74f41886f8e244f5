"""What a pin row becomes when a refresh sees a definition: the rule of pinned definitions.

`plan` is pure: given the row as the pin table holds it, the definition as the latest
refresh saw it (`Seen`) and the hash pinned in config, if any, it says what the row
should become (pinned as first seen, pinned by the config, quarantined, or unchanged);
`repinned` is a row pinned to a definition that was approved, by the config or by an
approver. `pinning.PinGuard` runs both as planners under the pin table's writer lock
(`pins.PinStore.change`) and records what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway.offerings import DefinitionKind
from gateway.upstreams.pins import PinKey, PinRow, PinStatus

# `approved_by` of a pin that came from the config file rather than a person.
CONFIG_APPROVER = "config"


@dataclass(frozen=True)
class Seen:
    """A definition as the latest refresh saw it."""

    kind: DefinitionKind
    name: str  # gateway name: <upstream>__<name>, or a gateway URI (template)
    upstream: str
    definition_hash: str
    document: dict[str, Any]  # what the hash covers (definitions, mcp_definitions)

    @property
    def key(self) -> PinKey:
        return (self.kind, self.name)


def plan(row: PinRow | None, seen: Seen, configured: str | None, now: str) -> PinRow | None:
    """The row ``row`` should become now that ``seen`` is live (None: no change).

    ``configured`` is the hash pinned in config for this tool, if any.
    """
    live = seen.definition_hash
    if row is None:
        if configured is None or configured == live:
            return PinRow(
                kind=seen.kind,
                name=seen.name,
                upstream=seen.upstream,
                definition_hash=live,
                definition=seen.document,
                status=PinStatus.PINNED,
                first_seen=now,
                changed_at=now,
                approved_by=CONFIG_APPROVER if configured else None,
                approved_at=now if configured else None,
            )
        return PinRow(
            kind=seen.kind,
            name=seen.name,
            upstream=seen.upstream,
            definition_hash=configured,
            definition=None,
            status=PinStatus.QUARANTINED,
            first_seen=now,
            changed_at=now,
            pending_hash=live,
            pending_definition=seen.document,
        )
    # None (no change), unless the row is from before rows named their upstream
    # (migration 0007 could not tell): then it is written once with it.
    unchanged = None
    if row.upstream is None:
        row = unchanged = replace(row, upstream=seen.upstream)
    if configured is not None and configured == live:
        # The admin pinned the live definition in config: that is the approval.
        if row.status is PinStatus.PINNED and row.definition_hash == live:
            return unchanged
        return repinned(row, seen.document, live, approved_by=CONFIG_APPROVER, now=now)
    expected = configured if configured is not None else row.definition_hash
    if row.status is PinStatus.PINNED and live == expected:
        return unchanged
    if (
        row.status is PinStatus.QUARANTINED
        and row.pending_hash == live
        and row.definition_hash == expected
    ):
        return unchanged  # already quarantined for exactly this change
    known = row.definition if row.definition_hash == expected else None
    return replace(
        row,
        definition_hash=expected,
        definition=known,
        status=PinStatus.QUARANTINED,
        pending_hash=live,
        pending_definition=seen.document,
        changed_at=now,
    )


def repinned(
    row: PinRow, document: dict[str, Any] | None, digest: str, *, approved_by: str, now: str
) -> PinRow:
    """``row`` pinned to ``digest`` (``document``), approved by ``approved_by``: by
    the config (`plan`) or by an approver (`pinning.PinGuard`)."""
    return replace(
        row,
        definition_hash=digest,
        definition=document,
        status=PinStatus.PINNED,
        pending_hash=None,
        pending_definition=None,
        approved_by=approved_by,
        approved_at=now,
        changed_at=now,
    )
