"""The pin table: what definition of each tool was approved, and what awaits approval.

One row per gateway tool name (`gateway.store.tables.tool_pins`), shared by every
gateway process on the database. Reads are plain SELECTs; every change is made under
the database-wide writer lock (`exclusive_transaction`), after re-reading the row, so
two processes that notice the same drift make one change, and ``version`` (one counter
over the whole table) grows by exactly one per change: the console's change feed.

Blocking (SQLAlchemy Core): callers in the event loop run these in a worker thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from gateway.errors import StorageError
from gateway.store import exclusive_transaction
from gateway.store.tables import tool_pins

# The writer lock of pin changes on PostgreSQL (ASCII "agwpins_"). SQLite has one lock.
PINS_LOCK_KEY = 0x61677770696E735F


class PinStatus(enum.StrEnum):
    PINNED = "pinned"  # the live definition is the approved one: offered and callable
    QUARANTINED = "quarantined"  # it changed: hidden and refused until approved


@dataclass(frozen=True)
class PinRow:
    """One row of ``tool_pins``.

    ``definition_hash``/``definition`` are the approved definition; ``definition`` is
    ``None`` when it is known only by a hash pinned in config. ``pending_*`` hold the
    live definition while quarantined.
    """

    tool: str
    definition_hash: str
    definition: dict[str, Any] | None
    status: PinStatus
    first_seen: str
    changed_at: str
    pending_hash: str | None = None
    pending_definition: dict[str, Any] | None = None
    approved_by: str | None = None
    approved_at: str | None = None
    version: int = 0

    def same_state(self, other: PinRow | None) -> bool:
        """True when ``other`` says the same (ignoring version and change time)."""
        if other is None:
            return False
        return replace(other, version=self.version, changed_at=self.changed_at) == self

    def to_values(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "definition_hash": self.definition_hash,
            "definition": self.definition,
            "status": self.status.value,
            "pending_hash": self.pending_hash,
            "pending_definition": self.pending_definition,
            "first_seen": self.first_seen,
            "changed_at": self.changed_at,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at,
            "version": self.version,
        }


# Given the row as it is now (None: no row), the row it should become (None: leave it).
Planner = Callable[[PinRow | None], PinRow | None]


class PinStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(self, tools: Iterable[str] | None = None) -> dict[str, PinRow]:
        """The rows of ``tools`` (all rows when ``None``), by tool name."""
        query = sa.select(tool_pins)
        if tools is not None:
            query = query.where(tool_pins.c.tool.in_(list(tools)))
        try:
            with self._engine.connect() as conn:
                return {row.tool: _row(row) for row in conn.execute(query)}
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read tool pins: {_describe(exc)}") from None

    def version(self) -> int:
        """The newest version of any row (0 for an empty table): changes since a
        reader's last look show up as a larger number."""
        try:
            with self._engine.connect() as conn:
                value = conn.execute(sa.select(sa.func.max(tool_pins.c.version))).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read tool pins: {_describe(exc)}") from None
        return int(value or 0)

    def change(self, plans: dict[str, Planner]) -> list[tuple[PinRow | None, PinRow]]:
        """Re-reads each tool's row under the writer lock, asks its planner what it
        should become, and writes that. Returns (before, after) for the rows changed,
        in the order given; a planner that returns ``None`` or the same state changes
        nothing. Planners may raise to abort the whole change."""
        changed: list[tuple[PinRow | None, PinRow]] = []
        try:
            with exclusive_transaction(self._engine, PINS_LOCK_KEY) as conn:
                current = {
                    row.tool: _row(row)
                    for row in conn.execute(
                        sa.select(tool_pins).where(tool_pins.c.tool.in_(list(plans)))
                    )
                }
                version = _max_version(conn)
                for tool, plan in plans.items():
                    before = current.get(tool)
                    after = plan(before)
                    if after is None or after.same_state(before):
                        continue
                    version += 1
                    after = replace(after, version=version)
                    if before is None:
                        conn.execute(tool_pins.insert().values(**after.to_values()))
                    else:
                        conn.execute(
                            tool_pins.update()
                            .where(tool_pins.c.tool == tool)
                            .values(**after.to_values())
                        )
                    changed.append((before, after))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot change tool pins: {_describe(exc)}") from None
        return changed


def _max_version(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(tool_pins.c.version))).scalar() or 0)


def _row(row: Any) -> PinRow:
    return PinRow(
        tool=row.tool,
        definition_hash=row.definition_hash,
        definition=row.definition,
        status=PinStatus(row.status),
        first_seen=row.first_seen,
        changed_at=row.changed_at,
        pending_hash=row.pending_hash,
        pending_definition=row.pending_definition,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        version=int(row.version),
    )


def _describe(exc: sa.exc.SQLAlchemyError) -> str:
    cause = getattr(exc, "orig", None) or exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
