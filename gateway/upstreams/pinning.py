"""Pinned tool definitions (architecture.md §7): a changed definition is quarantined until approved.

The catalog hands every refreshed tool list to `PinGuard.check`. For each tool the
*expected* hash is the one pinned in config (``upstreams[].pins``) if any, else the one
approved in the pin table; then

- nothing expected yet: the definition is pinned as first seen (``tool.pinned``);
- the live hash is the expected one: nothing happens (the common case: one SELECT);
- it differs: the tool is quarantined (``tool.drift`` with both hashes and a unified
  diff); it stays hidden and refused, even if the upstream changes it back, until an
  approver approves the pending definition (``tool.pinned`` with ``approved_by``), or,
  for a tool pinned in config, until the config pins the live hash.

A rug-pull that is reverted is still worth a look, and automatic release would let two
gateway processes with different views of an upstream flip a tool back and forth.

The pin table is the truth shared by all processes; each process keeps the rows in
memory for the per-call check (`verify`), re-read on every refresh, after an approval,
and whenever the table's version moves (`watch`), so an approval made through one
process releases the tool in all of them within ``pinning.sync_interval_s``.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from gateway.audit import AuditLog, AuditRecord
from gateway.config import Config
from gateway.errors import (
    DefinitionNotPending,
    GatewayError,
    PinConfigured,
    ToolQuarantined,
    UnknownTool,
)
from gateway.timestamps import utc_now
from gateway.types import Principal, ToolDefinition
from gateway.upstreams.definitions import gateway_name
from gateway.upstreams.pins import PinRow, PinStatus, PinStore

log = logging.getLogger(__name__)

# `approved_by` of a pin that came from the config file rather than a person.
CONFIG_APPROVER = "config"


@dataclass(frozen=True)
class Seen:
    """A tool as the latest refresh saw it."""

    tool: str  # gateway name, <upstream>__<tool>
    definition_hash: str
    document: dict[str, Any]  # what the hash covers (definitions.definition_document)


def plan(row: PinRow | None, seen: Seen, configured: str | None, now: str) -> PinRow | None:
    """The row ``row`` should become now that ``seen`` is live (None: no change).

    ``configured`` is the hash pinned in config for this tool, if any.
    """
    live = seen.definition_hash
    if row is None:
        if configured is None or configured == live:
            return PinRow(
                tool=seen.tool,
                definition_hash=live,
                definition=seen.document,
                status=PinStatus.PINNED,
                first_seen=now,
                changed_at=now,
                approved_by=CONFIG_APPROVER if configured else None,
                approved_at=now if configured else None,
            )
        return PinRow(
            tool=seen.tool,
            definition_hash=configured,
            definition=None,
            status=PinStatus.QUARANTINED,
            first_seen=now,
            changed_at=now,
            pending_hash=live,
            pending_definition=seen.document,
        )
    if configured is not None and configured == live:
        # The admin pinned the live definition in config: that is the approval.
        if row.status is PinStatus.PINNED and row.definition_hash == live:
            return None
        return _pinned(row, seen.document, live, approved_by=CONFIG_APPROVER, now=now)
    expected = configured if configured is not None else row.definition_hash
    if row.status is PinStatus.PINNED and live == expected:
        return None
    if (
        row.status is PinStatus.QUARANTINED
        and row.pending_hash == live
        and row.definition_hash == expected
    ):
        return None  # already quarantined for exactly this change
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


def _pinned(
    row: PinRow, document: dict[str, Any] | None, digest: str, *, approved_by: str, now: str
) -> PinRow:
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


def pretty(document: dict[str, Any] | None) -> list[str]:
    """The lines a diff compares: sorted keys, two-space indent (JCS has one line)."""
    if document is None:
        return []
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def definition_diff(row: PinRow) -> str:
    """Unified diff of the approved definition and the pending one."""
    old_label = f"approved sha256:{row.definition_hash}"
    if row.definition is None:
        old_label += " (known only by the hash pinned in config)"
    return "\n".join(
        difflib.unified_diff(
            pretty(row.definition),
            pretty(row.pending_definition),
            fromfile=old_label,
            tofile=f"pending sha256:{row.pending_hash}",
            lineterm="",
        )
    )


def quarantine_message(row: PinRow, live_hash: str | None = None) -> str:
    new = live_hash or row.pending_hash or "?"
    return (
        f"definition of {row.tool} changed since it was approved "
        f"(old sha256:{row.definition_hash[:12]}… → new sha256:{new[:12]}…); "
        "an approver must approve the new definition"
    )


def describe(row: PinRow, *, configured: bool) -> dict[str, Any]:
    """A row as the REST API, the console and the CLI show it."""
    body: dict[str, Any] = {
        "tool": row.tool,
        "status": row.status.value,
        "definition_hash": row.definition_hash,
        "definition": row.definition,
        "pending_hash": row.pending_hash,
        "pending_definition": row.pending_definition,
        "first_seen": row.first_seen,
        "changed_at": row.changed_at,
        "approved_by": row.approved_by,
        "approved_at": row.approved_at,
        "pinned_in_config": configured,
        "version": row.version,
    }
    if row.status is PinStatus.QUARANTINED:
        body["diff"] = definition_diff(row)
        body["reason"] = quarantine_message(row)
    return body


class PinGuard:
    """Decides, records and answers whether each tool's live definition is approved."""

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
        self._configured = dict(configured)  # gateway tool name -> hash
        self._clock = clock
        self._rows: dict[str, PinRow] = {}
        self._version = -1
        self._lock = anyio.Lock()

    # --- the per-call check (in memory) ----------------------------------------------

    def allows(self, tool: ToolDefinition) -> bool:
        row = self._rows.get(tool.name)
        return (
            row is not None
            and row.status is PinStatus.PINNED
            and row.definition_hash == tool.definition_hash
        )

    def verify(self, tool: ToolDefinition) -> None:
        """Raises `ToolQuarantined` unless ``tool``'s live definition is the approved one."""
        if self.allows(tool):
            return
        row = self._rows.get(tool.name)
        if row is None:
            message = f"definition of {tool.name} has not been checked against its pin yet"
            old = None
        else:
            message = quarantine_message(row, tool.definition_hash)
            old = row.definition_hash
        raise ToolQuarantined(
            message,
            details={"tool": tool.name, "old_hash": old, "new_hash": tool.definition_hash},
        )

    # --- refresh ---------------------------------------------------------------------

    async def check(self, seen: list[Seen]) -> None:
        """Pins, quarantines or leaves alone each tool of a fresh tool list, records
        each change in the audit log, and updates this process's view.

        Raises `StorageError` when the pin table cannot be read or changed; the caller
        then keeps what it knew (a tool never checked stays refused)."""
        now = self._clock()
        async with self._lock:
            rows = await anyio.to_thread.run_sync(self._store.read, [s.tool for s in seen])
            plans = {}
            for item in seen:
                configured = self._configured.get(item.tool)
                if plan(rows.get(item.tool), item, configured, now) is not None:
                    plans[item.tool] = _planner(item, configured, now)
            if plans:
                changed = await anyio.to_thread.run_sync(self._store.change, plans)
                for before, after in changed:
                    rows[after.tool] = after
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
                log.warning("cannot re-read tool pins: %s", exc.message)

    async def sync(self) -> None:
        async with self._lock:  # a refresh's newer rows must not be overwritten
            version = await anyio.to_thread.run_sync(self._store.version)
            if version == self._version:
                return
            rows = await anyio.to_thread.run_sync(self._store.read, None)
            # Only tools this process has seen: the others are not in its catalog.
            self._rows.update({k: v for k, v in rows.items() if k in self._rows})
            self._version = version

    # --- approval --------------------------------------------------------------------

    async def approve(
        self, tool: str, approver: Principal, definition_hash: str | None
    ) -> dict[str, Any]:
        """Re-pins ``tool`` to its pending definition (``definition_hash``, when given,
        must name it) and releases it. The approval is in the audit log before the tool
        is released. Raises `UnknownTool`, `PinConfigured` or `DefinitionNotPending`."""
        row = (await anyio.to_thread.run_sync(self._store.read, [tool])).get(tool)
        pending = self._check_approvable(tool, row, definition_hash)
        now = self._clock()
        assert row is not None  # _check_approvable raised otherwise
        await self._audit.append(
            AuditRecord(
                "tool.pinned",
                f"tool:{tool}",
                {
                    "tool": tool,
                    "definition_hash": pending,
                    "previous_hash": row.definition_hash,
                    "source": "approval",
                    "approved_by": approver.sub,
                    "approver": approver.to_audit(),
                    "definition": row.pending_definition,
                },
                approver.sub,
                tool,
            )
        )

        def approve_pending(current: PinRow | None) -> PinRow | None:
            self._check_approvable(tool, current, pending)
            assert current is not None
            return _pinned(
                current, current.pending_definition, pending, approved_by=approver.sub, now=now
            )

        changed = await anyio.to_thread.run_sync(self._store.change, {tool: approve_pending})
        async with self._lock:
            for _before, after in changed:
                self._rows[after.tool] = after
        after = changed[0][1] if changed else row
        log.info("tool %s: definition %s approved by %s", tool, pending[:12], approver.sub)
        return describe(after, configured=tool in self._configured)

    def _check_approvable(self, tool: str, row: PinRow | None, definition_hash: str | None) -> str:
        if row is None:
            raise UnknownTool(f"no pinned definition of tool {tool!r}", details={"tool": tool})
        if row.status is not PinStatus.QUARANTINED or row.pending_hash is None:
            raise DefinitionNotPending(
                f"{tool} is not quarantined: its definition {row.definition_hash[:12]}… "
                "is approved already",
                details={"tool": tool, "definition_hash": row.definition_hash},
            )
        if tool in self._configured:
            raise PinConfigured(
                f"{tool} is pinned in the config file (upstreams[].pins); to accept the "
                f"new definition, pin {row.pending_hash} there",
                details={"tool": tool, "pending_hash": row.pending_hash},
            )
        if definition_hash is not None and definition_hash != row.pending_hash:
            raise DefinitionNotPending(
                f"the definition awaiting approval for {tool} is {row.pending_hash}, not "
                f"{definition_hash}: it changed again; review the new diff",
                details={"tool": tool, "pending_hash": row.pending_hash},
            )
        return row.pending_hash

    # --- reading ---------------------------------------------------------------------

    async def describe(self, status: PinStatus | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(table version, rows as `describe` shows them), from the table itself."""
        version = await anyio.to_thread.run_sync(self._store.version)
        rows = await anyio.to_thread.run_sync(self._store.read, None)
        shown = [
            describe(row, configured=row.tool in self._configured)
            for row in sorted(rows.values(), key=lambda r: r.tool)
            if status is None or row.status is status
        ]
        return version, shown

    async def describe_one(self, tool: str) -> dict[str, Any]:
        row = (await anyio.to_thread.run_sync(self._store.read, [tool])).get(tool)
        if row is None:
            raise UnknownTool(f"no pinned definition of tool {tool!r}", details={"tool": tool})
        return describe(row, configured=tool in self._configured)

    # --- audit -------------------------------------------------------------------------

    async def _record(self, before: PinRow | None, after: PinRow) -> None:
        """Appends the entry for a change made by `check`. The change is already
        committed; a failed append is logged (a quarantine stands either way)."""
        if after.status is PinStatus.QUARANTINED:
            kind = "tool.drift"
            payload: dict[str, Any] = {
                "tool": after.tool,
                "old_hash": after.definition_hash,
                "new_hash": after.pending_hash,
                "pinned_in_config": after.tool in self._configured,
                "diff": definition_diff(after),
            }
            log.warning("%s", quarantine_message(after))
        else:
            kind = "tool.pinned"
            source = "first_seen" if before is None and after.approved_by is None else "config"
            payload = {
                "tool": after.tool,
                "definition_hash": after.definition_hash,
                "previous_hash": before.definition_hash if before else None,
                "source": source,
                "approved_by": after.approved_by,
                "definition": after.definition,
            }
        try:
            await self._audit.append(
                AuditRecord(kind, f"tool:{after.tool}", payload, after.approved_by, after.tool)
            )
        except GatewayError as exc:
            log.error("%s of %s not recorded: %s", kind, after.tool, exc.message)


def _planner(seen: Seen, configured: str | None, now: str) -> Callable[[PinRow | None], Any]:
    return lambda row: plan(row, seen, configured, now)


def configured_pins(config: Config) -> dict[str, str]:
    """``upstreams[].pins`` by gateway tool name."""
    return {
        gateway_name(upstream.name, tool): digest
        for upstream in config.upstreams
        for tool, digest in upstream.pins.items()
    }
