"""`gateway audit …`: reading the audit log (checking it: `audit_verify`)."""

from __future__ import annotations

import argparse
import json

from gateway.cli import audit_admin, audit_search, audit_verify
from gateway.cli.common import add_config_option, config_from


def register(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="read, export and verify the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_tail = audit_commands.add_parser("tail", help="newest entries with their payloads")
    add_config_option(audit_tail)
    audit_tail.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    audit_tail.add_argument("--json", action="store_true", help="one JSON object per line")
    audit_tail.set_defaults(handler=cmd_audit_tail)
    audit_verify.register_commands(audit_commands)
    audit_admin.register_commands(audit_commands)
    audit_search.register_commands(audit_commands)


def cmd_audit_tail(args: argparse.Namespace) -> int:
    from gateway.audit import tail
    from gateway.store import create_engine

    config = config_from(args)
    engine = create_engine(config.storage.url)
    try:
        entries = tail(engine, args.n)
    finally:
        engine.dispose()
    if args.json:
        for entry in entries:
            print(
                json.dumps(
                    {
                        "seq": entry.seq,
                        "ts": entry.ts,
                        "kind": entry.kind,
                        "ref": entry.ref,
                        "leaf_hash": entry.leaf_hash.hex(),
                        "payload": entry.payload,
                    }
                )
            )
        return 0
    for entry in entries:
        print(f"{entry.seq:>8}  {entry.ts}  {entry.kind:<16} {entry.ref}")
        print(f"          {entry.payload_line()}")
    return 0
