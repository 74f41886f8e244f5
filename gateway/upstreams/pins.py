"""The pin table: what definition of each tool, prompt, resource and resource template
was approved, and what awaits approval.

One row per (kind, gateway name) (`gateway.store.tables.tool_pins`), shared by every
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
from gateway.offerings import DefinitionKind
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

    kind: DefinitionKind
    name: str
    upstream: str | None
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

    @property
    def key(self) -> PinKey:
        return (self.kind, self.name)

    def same_state(self, other: PinRow | None) -> bool:
        """True when ``other`` says the same (ignoring version and change time)."""
        if other is None:
            return False
        return replace(other, version=self.version, changed_at=self.changed_at) == self

    def to_values(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "upstream": self.upstream,
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


# (kind, gateway name): what identifies a row.
PinKey = tuple[DefinitionKind, str]

# Given the row as it is now (None: no row), the row it should become (None: leave it).
Planner = Callable[[PinRow | None], PinRow | None]


class PinStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(
        self, keys: Iterable[PinKey] | None = None, *, upstream: str | None = None
    ) -> dict[PinKey, PinRow]:
        """The rows of ``keys`` (all rows when ``None``; only ``upstream``'s when given)."""
        query = sa.select(tool_pins)
        if keys is not None:
            query = query.where(_keys_in(list(keys)))
        if upstream is not None:
            query = query.where(tool_pins.c.upstream == upstream)
        try:
            with self._engine.connect() as conn:
                rows = [_row(row) for row in conn.execute(query)]
                return {row.key: row for row in rows}
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

    def change(self, plans: dict[PinKey, Planner]) -> list[tuple[PinRow | None, PinRow]]:
        """Re-reads each key's row under the writer lock, asks its planner what it
        should become, and writes that. Returns (before, after) for the rows changed,
        in the order given; a planner that returns ``None`` or the same state changes
        nothing. Planners may raise to abort the whole change."""
        changed: list[tuple[PinRow | None, PinRow]] = []
        try:
            with exclusive_transaction(self._engine, PINS_LOCK_KEY) as conn:
                rows = [_row(r) for r in conn.execute(sa.select(tool_pins).where(_keys_in(plans)))]
                current = {row.key: row for row in rows}
                version = _max_version(conn)
                for key, plan in plans.items():
                    before = current.get(key)
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
                            .where(tool_pins.c.kind == key[0], tool_pins.c.name == key[1])
                            .values(**after.to_values())
                        )
                    changed.append((before, after))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot change tool pins: {_describe(exc)}") from None
        return changed


def _keys_in(keys: Iterable[PinKey]) -> sa.ColumnElement[bool]:
    # One IN per kind (at most four), not a tuple IN: SQLite's row values are not
    # everywhere, and an OR per key would nest too deep for a thousand tools.
    by_kind: dict[str, list[str]] = {}
    for kind, name in keys:
        by_kind.setdefault(kind, []).append(name)
    return sa.or_(
        sa.false(),
        *(
            sa.and_(tool_pins.c.kind == kind, tool_pins.c.name.in_(names))
            for kind, names in by_kind.items()
        ),
    )


def _max_version(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(tool_pins.c.version))).scalar() or 0)


def _row(row: Any) -> PinRow:
    return PinRow(
        kind=row.kind,
        name=row.name,
        upstream=row.upstream,
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
