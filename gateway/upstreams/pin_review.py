"""What an approver sees of a pinned definition, and what the audit log records of it.

Pure functions over `PinRow`s, shared by `pinning.PinGuard`, the REST routes
(`gateway.surfaces.pins`), the console and the CLI: the unified diff of a quarantined
definition, the sentence that says why it is refused, a row as the API shows it, and
the audit records of pinning, drift and approval.

Audit kinds: a tool's are ``tool.pinned`` and ``tool.drift`` (payload key ``tool``,
as before prompts and resources were pinned); a prompt's, resource's or resource
template's are ``definition.pinned`` and ``definition.drift`` (payload keys ``kind``
and ``name``). Refs are ``tool:<name>`` and ``<kind>:<name>``.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from gateway.audit import AuditRecord
from gateway.types import Principal
from gateway.upstreams.pins import PinRow, PinStatus

_NOUN = {
    "tool": "tool",
    "prompt": "prompt",
    "resource": "resource",
    "resource_template": "resource template",
}


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
    what = row.name if row.kind == "tool" else f"{_NOUN[row.kind]} {row.name}"
    return (
        f"definition of {what} changed since it was approved "
        f"(old sha256:{row.definition_hash[:12]}… → new sha256:{new[:12]}…); "
        "an approver must approve the new definition"
    )


def describe(row: PinRow, *, configured: bool) -> dict[str, Any]:
    """A row as the REST API, the console and the CLI show it. ``tool`` repeats the
    name of a tool's row, as the API said before other kinds were pinned."""
    body: dict[str, Any] = {
        "kind": row.kind,
        "name": row.name,
        "upstream": row.upstream,
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
    if row.kind == "tool":
        body["tool"] = row.name
    if row.status is PinStatus.QUARANTINED:
        body["diff"] = definition_diff(row)
        body["reason"] = quarantine_message(row)
    return body


def _kind_and_ref(row: PinRow, event: str) -> tuple[str, str, dict[str, Any]]:
    """(audit kind, ref, the payload's naming keys) of an event about ``row``."""
    if row.kind == "tool":
        return f"tool.{event}", f"tool:{row.name}", {"tool": row.name}
    return (
        f"definition.{event}",
        f"{row.kind}:{row.name}",
        {"kind": row.kind, "name": row.name, "upstream": row.upstream},
    )


def drift_record(row: PinRow, *, configured: bool) -> AuditRecord:
    kind, ref, naming = _kind_and_ref(row, "drift")
    payload = {
        **naming,
        "old_hash": row.definition_hash,
        "new_hash": row.pending_hash,
        "pinned_in_config": configured,
        "diff": definition_diff(row),
    }
    return AuditRecord(kind, ref, payload, row.approved_by, row.name)


def pinned_record(before: PinRow | None, after: PinRow) -> AuditRecord:
    """A definition pinned as first seen, or by the config file."""
    kind, ref, naming = _kind_and_ref(after, "pinned")
    source = "first_seen" if before is None and after.approved_by is None else "config"
    payload = {
        **naming,
        "definition_hash": after.definition_hash,
        "previous_hash": before.definition_hash if before else None,
        "source": source,
        "approved_by": after.approved_by,
        "definition": after.definition,
    }
    return AuditRecord(kind, ref, payload, after.approved_by, after.name)


def approval_record(
    row: PinRow, pending: str, approver: Principal, *, upstream_wide: bool
) -> AuditRecord:
    """An approver's approval of ``row``'s pending definition (``upstream_wide``: one of
    an approval of every pending definition of its upstream at once)."""
    kind, ref, naming = _kind_and_ref(row, "pinned")
    payload = {
        **naming,
        "definition_hash": pending,
        "previous_hash": row.definition_hash,
        "source": "approval",
        "approved_by": approver.sub,
        "approver": approver.to_audit(),
        "definition": row.pending_definition,
    }
    if upstream_wide:
        payload["upstream_wide"] = True
    return AuditRecord(kind, ref, payload, approver.sub, row.name)
