"""`gateway approvals list|show|approve|deny`: deciding held calls from a terminal.

A client of the running gateway's REST API (never the database directly), so a
decision made here passes the same checks, policy decision and audit as any other.
The approver's JWT comes from ``--token`` or ``$GATEWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.remote import add_remote_options, request


def _options(parser: argparse.ArgumentParser) -> None:
    add_remote_options(parser, token_help="your JWT as an approver")


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("approvals", help="list and decide calls held for approval")
    sub = group.add_subparsers(dest="approvals_command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="approvals you may see (newest first)")
    _options(listing)
    listing.add_argument(
        "--status",
        choices=["pending", "approved", "denied", "expired", "cancelled", "all"],
        default="pending",
        help="which approvals (default: pending)",
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many approvals (default 50)"
    )
    listing.add_argument("--json", action="store_true", help="the API's JSON")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="one approval in full")
    _options(show)
    show.add_argument("id", help="approval id (apr_…)")
    show.add_argument("--json", action="store_true", help="the API's JSON")
    show.set_defaults(handler=cmd_show)

    approve = sub.add_parser("approve", help="approve a pending call: it runs on its retry")
    _options(approve)
    approve.add_argument("id", help="approval id (apr_…)")
    approve.add_argument("--reason", help="why (optional)")
    approve.set_defaults(handler=cmd_decide, approve=True)

    deny = sub.add_parser("deny", help="deny a pending call")
    _options(deny)
    deny.add_argument("id", help="approval id (apr_…)")
    deny.add_argument("--reason", required=True, help="why (required; the agent sees it)")
    deny.set_defaults(handler=cmd_decide, approve=False)


def cmd_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status != "all":
        params["status"] = args.status
    body = request(args, "GET", "/v1/approvals", params=params)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    approvals = body.get("approvals", [])
    if not approvals:
        print(f"no {'' if args.status == 'all' else args.status + ' '}approvals")
        return 0
    print(f"{'ID':<28} {'STATUS':<9} {'TOOL':<28} {'REQUESTER':<22} {'EXPIRES':<24} DECIDE")
    for a in approvals:
        print(
            f"{a['id']:<28} {a['status']:<9} {a['tool']:<28} {a['requester']['sub']:<22} "
            f"{a['expires_at']:<24} {'yes' if a.get('may_decide') else 'no'}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    body = request(
        args,
        "GET",
        f"/v1/approvals/{args.id}",
        not_found_hint=" (no such approval, or not one you may see)",
    )
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        _print_approval(body)
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    verb = "approve" if args.approve else "deny"
    payload: dict[str, Any] = {"channel": "cli"}
    if args.reason:
        payload["reason"] = args.reason
    body = request(args, "POST", f"/v1/approvals/{args.id}/{verb}", body=payload)
    print(f"{body['id']} {body['status']} by {body['decided_by']} at {body['decided_at']}")
    return 0


def _print_approval(a: dict[str, Any]) -> None:
    chain = " → ".join(actor["sub"] for actor in a["requester"]["act_chain"])
    rows = [
        ("id", a["id"]),
        ("status", a["status"]),
        ("tool", a["tool"]),
        ("requester", a["requester"]["sub"] + (f" (via {chain})" if chain else "")),
        ("arguments", json.dumps(a["arguments"], sort_keys=True)),
        ("arguments hash", a["arguments_hash"]),
        ("reasons", "; ".join(a["reasons"])),
        ("approvers", ", ".join(a["approvers"])),
        ("requested", f"{a['created_at']} (request {a['request_id']})"),
        ("expires", a["expires_at"]),
        ("decided", _decided(a)),
        ("execution", a["execution_state"]),
        ("you may decide", _may_decide(a)),
        ("console", a.get("console_url", "")),
    ]
    for name, value in rows:
        print(f"{name + ':':<16} {value}")
    if a["tool"] == "workflow__plan_review" and isinstance(a["arguments"], dict):
        _print_plan(a["arguments"])


def _print_plan(review: dict[str, Any]) -> None:
    """The plan a review approves, step by step (arguments as policy let them be shown)."""
    workflow = review.get("workflow")
    if workflow:
        print(f"{'workflow:':<16} {workflow['name']}@{workflow['version']} {workflow['hash']}")
    print(f"{'run:':<16} {review.get('run_id')}")
    print(f"{'inputs:':<16} {json.dumps(review.get('inputs'), sort_keys=True)}")
    plan = review.get("plan") or {}
    for step in plan.get("steps") or []:
        what = step.get("tool") or ("approval gate" if "approval" in step else "timer")
        needs = f" after {', '.join(step['needs'])}" if step.get("needs") else ""
        when = f" when {step['when']}" if step.get("when") else ""
        print(f"  step {step.get('id')}: {what}{needs}{when}")
        if "arguments" in step:
            print(f"    arguments {json.dumps(step['arguments'], sort_keys=True)}")
        if step.get("compensate"):
            print(f"    compensate {json.dumps(step['compensate'], sort_keys=True)}")


def _may_decide(a: dict[str, Any]) -> str:
    if a.get("may_decide"):
        return "yes"
    why = a.get("why_not") or {}
    return f"no: {why['message']} ({why['code']})" if why else "no"


def _decided(a: dict[str, Any]) -> str:
    if not a.get("decided_by"):
        return "-"
    text = f"{a['decided_by']} at {a['decided_at']} via {a['channel']}"
    return text + (f": {a['decision_reason']}" if a.get("decision_reason") else "")
