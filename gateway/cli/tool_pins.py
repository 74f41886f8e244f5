"""`gateway tools drift` and `gateway tools approve`: reviewing changed tool definitions.

Both are clients of a running gateway's REST API (``/v1/tools/definitions``), with an
approver's token: the approval is made, checked and audited by the gateway, exactly
as from the console, never by writing the database behind its back.
"""

from __future__ import annotations

import argparse
import json

from gateway.cli.remote import add_remote_options, request


def register(tools_commands: argparse._SubParsersAction) -> None:
    drift = tools_commands.add_parser(
        "drift", help="quarantined tools: definitions changed since they were approved"
    )
    add_remote_options(drift, token_help="an approver's bearer token")
    drift.add_argument("--json", action="store_true", help="the API's JSON as it is")
    drift.set_defaults(handler=cmd_drift)

    approve = tools_commands.add_parser(
        "approve", help="approve the new definition of a quarantined tool and release it"
    )
    add_remote_options(approve, token_help="an approver's bearer token")
    approve.add_argument("name", help="the tool's gateway name, <upstream>__<tool>")
    approve.add_argument(
        "--hash",
        dest="definition_hash",
        help="approve only if this is the pending definition hash (what you reviewed)",
    )
    approve.add_argument("--json", action="store_true", help="the API's JSON")
    approve.set_defaults(handler=cmd_approve)


def cmd_drift(args: argparse.Namespace) -> int:
    data = request(args, "GET", "/v1/tools/definitions", params={"status": "quarantined"})
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = data.get("definitions", [])
    if not rows:
        print("no quarantined tools")
        return 0
    for row in rows:
        print(f"{row['tool']}: quarantined since {row['changed_at']}")
        print(f"  approved  sha256:{row['definition_hash']}")
        print(f"  pending   sha256:{row['pending_hash']}")
        if row.get("pinned_in_config"):
            print("  pinned in config: change upstreams[].pins to accept it")
        print()
        print(row.get("diff") or "(no difference in content)")
        print()
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    path = f"/v1/tools/{args.name}/definition/approve"
    body = {"definition_hash": args.definition_hash} if args.definition_hash else {}
    row = request(args, "POST", path, body=body)
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(
        f"approved: {row['tool']} is pinned to sha256:{row['definition_hash']} "
        f"(by {row['approved_by']})"
    )
    return 0
