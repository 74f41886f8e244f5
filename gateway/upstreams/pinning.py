"""Pinned definitions (architecture.md §7): a changed definition is quarantined until approved.

What is pinned: every tool, prompt, resource and resource template an upstream lists
(`gateway.offerings.DefinitionKind`), each by the hash of what the model or user is told
about it; contents are never pinned (reads and prompt results are audited by hash).

The catalog hands every refreshed list to `PinGuard.check`. For each definition the
*expected* hash is the one pinned in config (``upstreams[].pins``, tools only) if any,
else the one approved in the pin table; then (`pin_plan.plan`)

- nothing expected yet: the definition is pinned as first seen (``tool.pinned``, or
  ``definition.pinned`` for the other kinds: `pin_review`);
- the live hash is the expected one: nothing happens (the common case: one SELECT);
- it differs: the definition is quarantined (``tool.drift``/``definition.drift`` with
  both hashes and a unified diff); it stays hidden and refused, even if the upstream
  changes it back, until an approver approves the pending definition (alone, or with
  every pending definition of its upstream at once), or, for a tool pinned in config,
  until the config pins the live hash.

A rug-pull that is reverted is still worth a look, and automatic release would let two
gateway processes with different views of an upstream flip a tool back and forth.

The pin table is the truth shared by all processes; each process keeps the rows in
memory for the per-call check (`verify`), re-read on every refresh, after an approval,
and whenever the table's version moves (`watch`), so an approval made through one
process releases the tool in all of them within ``pinning.sync_interval_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio

from gateway.audit import AuditLog
from gateway.config import Config
from gateway.errors import (
    DefinitionNotPending,
    DefinitionQuarantined,
    GatewayError,
    PinConfigured,
    ToolQuarantined,
    UnknownTarget,
)
from gateway.offerings import DefinitionKind
from gateway.timestamps import utc_now
from gateway.types import Principal
from gateway.upstreams.naming import gateway_name
from gateway.upstreams.pin_plan import Seen, plan, repinned
from gateway.upstreams.pin_review import (
    approval_record,
    describe,
    drift_record,
    pinned_record,
    quarantine_message,
)
from gateway.upstreams.pins import PinKey, PinRow, PinStatus, PinStore

log = logging.getLogger(__name__)


class PinGuard:
    """Decides, records and answers whether each definition's live form is approved."""

    def __init__(
        self,
        store: PinStore,
        audit: AuditLog,
        *,
        configured: dict[str, str],
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self._store = store
        self._audit = audit
        # Hashes pinned in config: tools only, by gateway tool name.
        self._configured: dict[PinKey, str] = {("tool", k): v for k, v in configured.items()}
        self._clock = clock
        self._rows: dict[PinKey, PinRow] = {}
        self._version = -1
        self._lock = anyio.Lock()

    # --- the per-call check (in memory) ----------------------------------------------

    def allows(self, kind: DefinitionKind, name: str, definition_hash: str) -> bool:
        row = self._rows.get((kind, name))
        return (
            row is not None
            and row.status is PinStatus.PINNED
            and row.definition_hash == definition_hash
        )

    def verify(self, kind: DefinitionKind, name: str, definition_hash: str) -> None:
        """Raises `ToolQuarantined` (a tool) or `DefinitionQuarantined` (a prompt,
        resource or template) unless the live definition is the approved one."""
        if self.allows(kind, name, definition_hash):
            return
        row = self._rows.get((kind, name))
        if row is None:
            message = f"definition of {name} has not been checked against its pin yet"
            old = None
        else:
            message = quarantine_message(row, definition_hash)
            old = row.definition_hash
        details = {"old_hash": old, "new_hash": definition_hash}
        if kind == "tool":
            raise ToolQuarantined(message, details={"tool": name, **details})
        raise DefinitionQuarantined(message, details={"kind": kind, "name": name, **details})

    # --- refresh ---------------------------------------------------------------------

    async def check(self, seen: list[Seen]) -> None:
        """Pins, quarantines or leaves alone each definition of a fresh list, records
        each change in the audit log, and updates this process's view.

        Raises `StorageError` when the pin table cannot be read or changed; the caller
        then keeps what it knew (a definition never checked stays refused)."""
        now = self._clock()
        async with self._lock:
            rows = await anyio.to_thread.run_sync(self._store.read, [s.key for s in seen])
            plans = {}
            for item in seen:
                configured = self._configured.get(item.key)
                if plan(rows.get(item.key), item, configured, now) is not None:
                    plans[item.key] = _planner(item, configured, now)
            if plans:
                changed = await anyio.to_thread.run_sync(self._store.change, plans)
                for before, after in changed:
                    rows[after.key] = after
                    await self._record(before, after)
                rows.update(await anyio.to_thread.run_sync(self._store.read, list(plans)))
            self._rows.update(rows)

    async def watch(self, interval_s: float) -> None:
        """Re-reads the pin table whenever its version moves (approvals made through
        other processes). Runs until cancelled."""
        while True:
            await anyio.sleep(interval_s)
            try:
                await self.sync()
            except GatewayError as exc:
                log.warning("cannot re-read pins: %s", exc.message)

    async def sync(self) -> None:
        async with self._lock:  # a refresh's newer rows must not be overwritten
            version = await anyio.to_thread.run_sync(self._store.version)
            if version == self._version:
                return
            rows = await anyio.to_thread.run_sync(self._store.read, None)
            # Only definitions this process has seen: the others are not in its catalog.
            self._rows.update({k: v for k, v in rows.items() if k in self._rows})
            self._version = version

    # --- approval --------------------------------------------------------------------

    async def approve(
        self,
        kind: DefinitionKind,
        name: str,
        approver: Principal,
        definition_hash: str | None,
    ) -> dict[str, Any]:
        """Re-pins one definition to its pending form (``definition_hash``, when given,
        must name it) and releases it. The approval is in the audit log before the
        definition is released. Raises `UnknownTarget`, `PinConfigured` or
        `DefinitionNotPending`."""
        row = (await anyio.to_thread.run_sync(self._store.read, [(kind, name)])).get((kind, name))
        pending = self._check_approvable(kind, name, row, definition_hash)
        assert row is not None  # _check_approvable raised otherwise
        await self._audit.append(approval_record(row, pending, approver, upstream_wide=False))
        after = (await self._release({row.key: pending}, approver))[0]
        log.info("%s %s: definition %s approved by %s", kind, name, pending[:12], approver.sub)
        return describe(after, configured=row.key in self._configured)

    async def approve_upstream(
        self,
        upstream: str,
        approver: Principal,
        expected: dict[PinKey, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Approves every pending definition of ``upstream`` at once (a server with a
        hundred resources stays reviewable), each recorded as its own approval in one
        audit transaction before any is released. ``expected`` (kind and name → the
        pending hash the approver reviewed), when given, must be exactly what is
        pending: a definition that changed again, or one not reviewed, refuses the
        whole approval and changes nothing. Definitions pinned in config are left to
        the config. Returns the released rows (none when nothing was pending)."""
        rows = await anyio.to_thread.run_sync(lambda: self._store.read(None, upstream=upstream))
        pending_rows = [
            r
            for r in sorted(rows.values(), key=lambda r: r.key)
            if r.status is PinStatus.QUARANTINED
            and r.pending_hash is not None
            and r.key not in self._configured
        ]
        if expected is not None:
            found = {r.key: r.pending_hash for r in pending_rows}
            if found != expected:
                changed = sorted(
                    f"{kind} {name}"
                    for kind, name in set(found) | set(expected)
                    if found.get((kind, name)) != expected.get((kind, name))
                )
                raise DefinitionNotPending(
                    f"what awaits approval for upstream {upstream} is not what was reviewed "
                    f"({', '.join(changed)}): review the new diffs",
                    details={"upstream": upstream, "differs": changed},
                )
        if not pending_rows:
            return []
        pending = {r.key: self._check_approvable(r.kind, r.name, r, None) for r in pending_rows}
        records = [
            approval_record(r, pending[r.key], approver, upstream_wide=True) for r in pending_rows
        ]
        await self._audit.append(*records)
        released = await self._release(pending, approver)
        log.info(
            "upstream %s: %d pending definitions approved by %s",
            upstream,
            len(released),
            approver.sub,
        )
        return [describe(r, configured=False) for r in released]

    async def _release(self, pending: dict[PinKey, str], approver: Principal) -> list[PinRow]:
        """Pins each key to its approved pending hash, re-checked under the writer lock."""
        now = self._clock()

        def approver_of(key: PinKey, digest: str) -> Callable[[PinRow | None], PinRow | None]:
            def approve_pending(current: PinRow | None) -> PinRow | None:
                self._check_approvable(key[0], key[1], current, digest)
                assert current is not None
                return repinned(
                    current, current.pending_definition, digest, approved_by=approver.sub, now=now
                )

            return approve_pending

        plans = {key: approver_of(key, digest) for key, digest in pending.items()}
        changed = await anyio.to_thread.run_sync(self._store.change, plans)
        async with self._lock:
            for _before, after in changed:
                self._rows[after.key] = after
        return [after for _before, after in changed]

    def _check_approvable(
        self, kind: DefinitionKind, name: str, row: PinRow | None, definition_hash: str | None
    ) -> str:
        if row is None:
            raise UnknownTarget(
                f"no pinned definition of {kind} {name!r}", details={"kind": kind, "name": name}
            )
        if row.status is not PinStatus.QUARANTINED or row.pending_hash is None:
            raise DefinitionNotPending(
                f"{name} is not quarantined: its definition {row.definition_hash[:12]}… "
                "is approved already",
                details={"kind": kind, "name": name, "definition_hash": row.definition_hash},
            )
        if row.key in self._configured:
            raise PinConfigured(
                f"{name} is pinned in the config file (upstreams[].pins); to accept the "
                f"new definition, pin {row.pending_hash} there",
                details={"kind": kind, "name": name, "pending_hash": row.pending_hash},
            )
        if definition_hash is not None and definition_hash != row.pending_hash:
            raise DefinitionNotPending(
                f"the definition awaiting approval for {name} is {row.pending_hash}, not "
                f"{definition_hash}: it changed again; review the new diff",
                details={"kind": kind, "name": name, "pending_hash": row.pending_hash},
            )
        return row.pending_hash

    # --- reading ---------------------------------------------------------------------

    async def describe(
        self,
        status: PinStatus | None = None,
        *,
        kind: DefinitionKind | None = None,
        upstream: str | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(table version, rows as `describe` shows them), from the table itself."""
        version = await anyio.to_thread.run_sync(self._store.version)
        rows = await anyio.to_thread.run_sync(lambda: self._store.read(None, upstream=upstream))
        shown = [
            describe(row, configured=row.key in self._configured)
            for row in sorted(rows.values(), key=lambda r: r.key)
            if (status is None or row.status is status) and (kind is None or row.kind == kind)
        ]
        return version, shown

    async def describe_one(self, kind: DefinitionKind, name: str) -> dict[str, Any]:
        row = (await anyio.to_thread.run_sync(self._store.read, [(kind, name)])).get((kind, name))
        if row is None:
            raise UnknownTarget(
                f"no pinned definition of {kind} {name!r}", details={"kind": kind, "name": name}
            )
        return describe(row, configured=row.key in self._configured)

    # --- audit -------------------------------------------------------------------------

    async def _record(self, before: PinRow | None, after: PinRow) -> None:
        """Appends the entry for a change made by `check`. The change is already
        committed; a failed append is logged (a quarantine stands either way)."""
        if after.status is PinStatus.QUARANTINED:
            record = drift_record(after, configured=after.key in self._configured)
            log.warning("%s", quarantine_message(after))
        elif before is not None and before.same_state(replace(after, upstream=before.upstream)):
            return  # only the upstream was filled in (plan's backfill): nothing to record
        else:
            record = pinned_record(before, after)
        try:
            await self._audit.append(record)
        except GatewayError as exc:
            log.error("%s of %s not recorded: %s", record.kind, after.name, exc.message)


def _planner(seen: Seen, configured: str | None, now: str) -> Callable[[PinRow | None], Any]:
    return lambda row: plan(row, seen, configured, now)


def configured_pins(config: Config) -> dict[str, str]:
    """``upstreams[].pins`` by gateway tool name."""
    return {
        gateway_name(upstream.name, tool): digest
        for upstream in config.upstreams
        for tool, digest in upstream.pins.items()
    }
