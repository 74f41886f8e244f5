"""`gateway audit search`: find entries by time, principal, tool, kind or reference,
each with its inclusion proof against the latest checkpoint, checked here
(`gateway.audit.search`, shared with the explorer's ``GET /v1/audit/entries``)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from gateway.cli.common import add_config_option, config_from

if TYPE_CHECKING:
    from gateway.audit.search import CheckedEntry


def register_commands(audit_commands: argparse._SubParsersAction) -> None:
    command = audit_commands.add_parser(
        "search", help="entries by time, principal, tool, kind or reference, with proofs"
    )
    add_config_option(command)
    command.add_argument("--since", help="from this time (RFC 3339, e.g. 2026-11-21T10:00Z)")
    command.add_argument("--until", help="up to this time (RFC 3339)")
    command.add_argument("--principal", help="the calling principal's sub")
    command.add_argument("--tool", help="gateway tool name, e.g. demo__echo")
    command.add_argument("--kind", help="entry kind, e.g. call.decision")
    command.add_argument("--ref", help="request, run or approval id")
    command.add_argument(
        "-n", "--limit", type=int, default=50, help="at most N entries, the newest (default 50)"
    )
    command.add_argument("--json", action="store_true", help="one JSON object per line")
    command.set_defaults(handler=cmd_audit_search)


def cmd_audit_search(args: argparse.Namespace) -> int:
    # Imported here: the database layer is not loaded for other commands (an auditor's
    # `audit verify` of an export directory needs none).
    from gateway.audit.search import SearchQuery, leaf_time, search
    from gateway.store import create_engine

    config = config_from(args)
    query = SearchQuery(
        since=None if args.since is None else leaf_time(args.since, "--since"),
        until=None if args.until is None else leaf_time(args.until, "--until"),
        principal=args.principal,
        tool=args.tool,
        kind=args.kind,
        ref=args.ref,
        limit=args.limit,
    )
    engine = create_engine(config.storage.url)
    try:
        result = search(engine, config.audit.origin, query)
    finally:
        engine.dispose()
    checked = list(reversed(result.entries))  # oldest first
    for one in checked:
        row = _row(one)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['seq']:>8}  {row['ts']}  {row['kind']:<16} {row['ref']}  [{row['proof']}]")
            print(f"          {one.entry.payload_line()}")
    if not checked and not args.json:
        print("no entries match")
    return 0


def _row(checked: CheckedEntry) -> dict[str, Any]:
    entry = checked.entry
    row: dict[str, Any] = {
        "seq": entry.seq,
        "ts": entry.ts,
        "kind": entry.kind,
        "ref": entry.ref,
        "leaf_hash": entry.leaf_hash.hex(),
        "payload": entry.payload,
        "status": checked.status.value,
        "proof": checked.summary(),
    }
    if checked.proof is not None:
        row["receipt"] = checked.proof.receipt
    return row
