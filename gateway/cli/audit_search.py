"""`gateway audit search`: find entries by time, principal, tool, kind or reference,
each with its inclusion proof against the latest checkpoint, checked here."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from gateway.audit import AuditEntry, format_ts, tail
from gateway.audit.checkpointer import latest_checkpoint
from gateway.audit.errors import AuditVerificationError
from gateway.audit.keys import read_keys
from gateway.audit.receipt import receipt_for_entry, verify_receipt
from gateway.cli.common import add_config_option, config_from
from gateway.errors import GatewayError
from gateway.store import create_engine


def register_commands(audit_commands: argparse._SubParsersAction) -> None:
    search = audit_commands.add_parser(
        "search", help="entries by time, principal, tool, kind or reference, with proofs"
    )
    add_config_option(search)
    search.add_argument("--since", help="from this time (RFC 3339, e.g. 2026-11-21T10:00Z)")
    search.add_argument("--until", help="up to this time (RFC 3339)")
    search.add_argument("--principal", help="the calling principal's sub")
    search.add_argument("--tool", help="gateway tool name, e.g. demo__echo")
    search.add_argument("--kind", help="entry kind, e.g. call.decision")
    search.add_argument("--ref", help="request, run or approval id")
    search.add_argument("-n", "--limit", type=int, default=50, help="newest N (default 50)")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(handler=cmd_audit_search)


def _timestamp(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(f"{option} {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_ts(moment)


def cmd_audit_search(args: argparse.Namespace) -> int:
    config = config_from(args)
    since = _timestamp(args.since, "--since")
    until = _timestamp(args.until, "--until")
    engine = create_engine(config.storage.url)
    try:
        entries = tail(
            engine,
            args.limit,
            kind=args.kind,
            ref=args.ref,
            subject=args.principal,
            tool=args.tool,
            since=since,
            until=until,
        )
        keys = read_keys(engine)
        latest = latest_checkpoint(engine)
        rows = [
            _with_proof(engine, entry, keys, config.audit.origin, latest.size if latest else 0)
            for entry in entries
        ]
    finally:
        engine.dispose()
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            payload = "(erased)" if row["payload"] is None else json.dumps(row["payload"])
            print(f"{row['seq']:>8}  {row['ts']}  {row['kind']:<16} {row['ref']}  [{row['proof']}]")
            print(f"          {payload}")
    if not rows and not args.json:
        print("no entries match")
    return 0


def _with_proof(
    engine: Any, entry: AuditEntry, keys: list[Any], origin: str, checkpoint_size: int
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": entry.seq,
        "ts": entry.ts,
        "kind": entry.kind,
        "ref": entry.ref,
        "leaf_hash": entry.leaf_hash.hex(),
        "payload": entry.payload,
    }
    if entry.seq >= checkpoint_size:
        row["proof"] = "not yet in a checkpoint"
        return row
    try:
        receipt = receipt_for_entry(engine, entry.seq)
        checkpoint = verify_receipt(receipt, entry.leaf, origin=origin, keys=keys)
    except AuditVerificationError as exc:
        row["proof"] = f"FAILED: {exc.message}"
        return row
    row["proof"] = f"included in checkpoint {checkpoint.size}, verified"
    row["receipt"] = receipt
    return row
