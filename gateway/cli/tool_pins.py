"""`gateway tools drift` and `gateway tools approve`: reviewing changed definitions of
tools, prompts, resources and resource templates.

Both are clients of a running gateway's REST API (``/v1/definitions``), with an
approver's token: the approval is made, checked and audited by the gateway, exactly
as from the console, never by writing the database behind its back.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.remote import add_remote_options, request

KINDS = ("tool", "prompt", "resource", "resource_template")


def register(tools_commands: argparse._SubParsersAction) -> None:
    drift = tools_commands.add_parser(
        "drift", help="quarantined definitions: changed since they were approved"
    )
    add_remote_options(drift, token_help="an approver's bearer token")
    drift.add_argument("--upstream", help="only this upstream's definitions")
    drift.add_argument("--json", action="store_true", help="the API's JSON as it is")
    drift.set_defaults(handler=cmd_drift)

    approve = tools_commands.add_parser(
        "approve",
        help="approve the new definition of a quarantined tool, prompt or resource, or "
        "(--upstream) every pending definition of one upstream, and release them",
    )
    add_remote_options(approve, token_help="an approver's bearer token")
    approve.add_argument(
        "name",
        nargs="?",
        help="the gateway name, <upstream>__<name>, or a resource's gateway URI",
    )
    approve.add_argument("--kind", choices=KINDS, default="tool", help="what NAME is (tool)")
    approve.add_argument(
        "--hash",
        dest="definition_hash",
        help="approve only if this is the pending definition hash (what you reviewed)",
    )
    approve.add_argument(
        "--upstream",
        help="approve every definition of this upstream that awaits approval, exactly as "
        "listed now (refused if any changes before the approval)",
    )
    approve.add_argument("--json", action="store_true", help="the API's JSON")
    approve.set_defaults(handler=cmd_approve)


def cmd_drift(args: argparse.Namespace) -> int:
    params = {"status": "quarantined"}
    if args.upstream:
        params["upstream"] = args.upstream
    data = request(args, "GET", "/v1/definitions", params=params)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = data.get("definitions", [])
    if not rows:
        print("no quarantined definitions")
        return 0
    for row in rows:
        print(f"{row['kind']} {row['name']}: quarantined since {row['changed_at']}")
        print(f"  approved  sha256:{row['definition_hash']}")
        print(f"  pending   sha256:{row['pending_hash']}")
        if row.get("pinned_in_config"):
            print("  pinned in config: change upstreams[].pins to accept it")
        print()
        print(row.get("diff") or "(no difference in content)")
        print()
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.upstream is None):
        raise SystemExit("give either NAME or --upstream UPSTREAM")
    if args.upstream is not None:
        return _approve_upstream(args)
    body: dict[str, Any] = {"kind": args.kind, "name": args.name}
    if args.definition_hash:
        body["definition_hash"] = args.definition_hash
    row = request(args, "POST", "/v1/definitions/approve", body=body)
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(
        f"approved: {row['kind']} {row['name']} is pinned to sha256:{row['definition_hash']} "
        f"(by {row['approved_by']})"
    )
    return 0


def _approve_upstream(args: argparse.Namespace) -> int:
    listed = request(
        args,
        "GET",
        "/v1/definitions",
        params={"status": "quarantined", "upstream": args.upstream},
    )
    reviewed = [
        {"kind": r["kind"], "name": r["name"], "definition_hash": r["pending_hash"]}
        for r in listed.get("definitions", [])
        if not r.get("pinned_in_config")
    ]
    path = f"/v1/upstreams/{args.upstream}/definitions/approve"
    data = request(args, "POST", path, body={"definitions": reviewed})
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    approved = data.get("approved", [])
    if not approved:
        print(f"nothing of upstream {args.upstream} awaits approval")
        return 0
    for row in approved:
        print(f"approved: {row['kind']} {row['name']} sha256:{row['definition_hash']}")
    print(f"{len(approved)} definition(s) of upstream {args.upstream} approved")
    return 0
