"""`gateway tools drift` and `gateway tools approve`: reviewing changed tool definitions.

Both are clients of a running gateway's REST API (``/v1/tools/definitions``), with an
approver's token: the approval is made, checked and audited by the gateway, exactly
as from the console, never by writing the database behind its back.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import httpx

from gateway.errors import GatewayError


class RemoteError(GatewayError):
    """The gateway answered a CLI request with an error (its code is kept)."""

    code = "remote_error"


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"),
        help="the gateway (default: $GATEWAY_URL, else http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("GATEWAY_TOKEN"),
        help="an approver's bearer token (default: $GATEWAY_TOKEN)",
    )


def register(tools_commands: argparse._SubParsersAction) -> None:
    drift = tools_commands.add_parser(
        "drift", help="quarantined tools: definitions changed since they were approved"
    )
    add_remote_options(drift)
    drift.add_argument("--json", action="store_true", help="the API's JSON as it is")
    drift.set_defaults(handler=cmd_drift)

    approve = tools_commands.add_parser(
        "approve", help="approve the new definition of a quarantined tool and release it"
    )
    add_remote_options(approve)
    approve.add_argument("name", help="the tool's gateway name, <upstream>__<tool>")
    approve.add_argument(
        "--hash",
        dest="definition_hash",
        help="approve only if this is the pending definition hash (what you reviewed)",
    )
    approve.add_argument("--json", action="store_true")
    approve.set_defaults(handler=cmd_approve)


def cmd_drift(args: argparse.Namespace) -> int:
    data = _request(args, "GET", "/v1/tools/definitions", params={"status": "quarantined"})
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
    row = _request(args, "POST", path, body=body)
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(
        f"approved: {row['tool']} is pinned to sha256:{row['definition_hash']} "
        f"(by {row['approved_by']})"
    )
    return 0


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if not args.token:
        raise RemoteError("give an approver's token with --token or $GATEWAY_TOKEN")
    url = args.url.rstrip("/") + path
    try:
        response = httpx.request(
            method,
            url,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {args.token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the gateway at {args.url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = (data or {}).get("error") or {}
        message = error.get("message") or response.text[:200] or response.reason_phrase
        code = error.get("code", "error")
        raise RemoteError(f"{message} ({code}, HTTP {response.status_code})")
    if not isinstance(data, dict):
        raise RemoteError(f"unexpected answer from {url}: {response.text[:200]}")
    return data
