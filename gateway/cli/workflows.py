"""`gateway workflows publish|pin|list|show|diff|promote`: versioned workflows.

Clients of the running gateway's REST API (never the database directly): publishing
and promoting are policy decisions (``workflow/publish``, ``workflow/promote``) made
and audited by the gateway. The JWT comes from ``--token`` or ``$GATEWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.cli.common import add_config_option, config_from
from gateway.cli.remote import add_remote_options, request
from gateway.errors import GatewayError


class WorkflowsCliError(GatewayError):
    """A workflow reference or directory the command cannot use; says why."""

    code = "workflows_cli_error"


def register(commands: argparse._SubParsersAction) -> None:
    workflows = commands.add_parser(
        "workflows", help="versioned workflows: publish, compare, promote (not policy bundles)"
    )
    sub = workflows.add_subparsers(dest="workflows_command", required=True, metavar="COMMAND")

    publish = sub.add_parser(
        "publish", help="publish a workflow directory (workflow.yaml, scenarios/)"
    )
    add_remote_options(publish, token_help="your JWT (a role policy lets publish)")
    publish.add_argument("directory", type=Path, help="the directory holding workflow.yaml")
    publish.add_argument(
        "-q", "--quiet", action="store_true", help="print the version's id only (for scripts)"
    )
    publish.add_argument(
        "--force",
        action="store_true",
        help="publish even if scenarios fail (the audit log records that it was forced)",
    )
    publish.set_defaults(handler=cmd_publish)

    test = sub.add_parser(
        "test",
        help="run a workflow directory's scenarios against it, offline",
        description="Sends the workflow to the gateway, which runs each scenario against "
        "it with its current policy and catalog and the scenario's recorded tool results "
        "(no tool is called, nothing is recorded). Exit 0 when every scenario passes, 1 "
        "when one fails.",
    )
    add_remote_options(test, token_help="your JWT")
    test.add_argument("directory", type=Path, help="the directory holding workflow.yaml")
    test.add_argument("--json", action="store_true", help="the API's JSON")
    test.add_argument(
        "--policy",
        type=Path,
        help="decide with this policy folder instead, here: with the config's policy data "
        "and the tools as pinned in its database (needs --config; no gateway is asked)",
    )
    add_config_option(test)
    test.add_argument(
        "--sub",
        default="user:workflows-test",
        help="with --policy: who runs a scenario that names no subject",
    )
    test.add_argument(
        "--role", action="append", default=[], help="with --policy: a role of --sub (repeat)"
    )
    test.set_defaults(handler=cmd_test)

    pin = sub.add_parser(
        "pin",
        help="print the definition hashes the gateway offers for the tools the plan calls",
        description="Looks up, in the gateway's catalog, the tools the workflow's plan calls "
        "and prints a `tools:` block pinning their current definitions; --write puts it "
        "into workflow.yaml (rewriting the file: its comments are not kept).",
    )
    add_remote_options(pin, token_help="your JWT")
    pin.add_argument("directory", type=Path, help="the directory holding workflow.yaml")
    pin.add_argument("--write", action="store_true", help="update workflow.yaml in place")
    pin.set_defaults(handler=cmd_pin)

    listing = sub.add_parser("list", help="published workflows: versions and channels")
    add_remote_options(listing, token_help="your JWT")
    listing.add_argument("--json", action="store_true", help="the API's JSON")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="a workflow (NAME) or one version (NAME@VERSION)")
    add_remote_options(show, token_help="your JWT")
    show.add_argument("ref", help="NAME, NAME@VERSION or NAME@CHANNEL")
    show.add_argument("--json", action="store_true", help="the API's JSON")
    show.set_defaults(handler=cmd_show)

    diff = sub.add_parser("diff", help="what differs between two versions of a workflow")
    add_remote_options(diff, token_help="your JWT")
    diff.add_argument("a", help="NAME@VERSION or NAME@CHANNEL")
    diff.add_argument("b", help="NAME@VERSION or NAME@CHANNEL (the same NAME)")
    diff.add_argument("--json", action="store_true", help="the API's JSON")
    diff.set_defaults(handler=cmd_diff)

    promote = sub.add_parser(
        "promote",
        help="point a channel at a version (a policy decision; may need an approval)",
        description="Asks the gateway to point CHANNEL at NAME@VERSION. When policy wants "
        "an approval, prints the approval's id and exits 2: once an approver (never you) "
        "approved it, run the same command again. Rollback: promote the earlier version.",
    )
    add_remote_options(promote, token_help="your JWT")
    promote.add_argument("ref", help="NAME@VERSION")
    promote.add_argument("--to", required=True, dest="channel", help="the channel, e.g. prod")
    promote.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the approval id when one is needed (for scripts)",
    )
    promote.set_defaults(handler=cmd_promote)


def _split(ref: str) -> tuple[str, str | None]:
    name, at, which = ref.partition("@")
    if not name or (at and not which):
        raise WorkflowsCliError(f"name a workflow as NAME or NAME@VERSION, not {ref!r}")
    return name, which or None


def _resolve_path(name: str, which: str) -> str:
    return f"/v1/workflows/{name}/{which}"


def cmd_publish(args: argparse.Namespace) -> int:
    from gateway.workflows.manifest import read_directory

    document = read_directory(args.directory)
    body = {"manifest": document, "force": args.force}
    answer = request(args, "POST", "/v1/workflows", body=body)
    if args.quiet:
        print(answer["id"])
        return 0
    state = "published" if answer["created"] else "already published (same content)"
    print(f"{answer['name']}@{answer['version']} {state}: {answer['id']} {answer['hash']}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from gateway.workflows.manifest import read_directory

    document = read_directory(args.directory)
    if args.policy is not None:
        answer = _test_here(args, document)
    else:
        answer = request(args, "POST", "/v1/workflows/test", body={"manifest": document})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0 if answer["passed"] else 1
    for result in answer["scenarios"]:
        print(f"{'pass' if result['passed'] else 'FAIL'}  {result['scenario']}")
        for mismatch in result["mismatches"]:
            print(f"      {mismatch}")
    if not answer["scenarios"]:
        print("no scenarios")
    return 0 if answer["passed"] else 1


def _test_here(args: argparse.Namespace, document: dict[str, Any]) -> dict[str, Any]:
    """`gateway.workflows.testing` on this machine, with the candidate policy: the same
    answer as ``POST /v1/workflows/test``."""
    import asyncio

    from gateway.cli.runs_replay import candidate_engine
    from gateway.store import create_engine
    from gateway.types import Principal
    from gateway.workflows.manifest import parse_manifest
    from gateway.workflows.pinned_tools import pinned_tools
    from gateway.workflows.testing import check_plan, run_scenarios_with

    config = config_from(args)
    manifest = parse_manifest(document)
    database = create_engine(config.storage.url)
    try:
        tools = pinned_tools(database, config.upstreams)
    finally:
        database.dispose()
    plan = check_plan(manifest, tools, max_steps=config.executor.max_steps)
    tester = Principal(sub=args.sub, iss="urn:gateway:workflows-test", roles=tuple(args.role))

    async def run() -> list[dict[str, Any]]:
        decide, close = candidate_engine(config, args.policy)
        try:
            return await run_scenarios_with(
                manifest, plan, tools.resources(plan.tools()), decide, tester, request_id="test"
            )
        finally:
            await close()

    results = asyncio.run(run())
    return {"passed": all(r["passed"] for r in results), "scenarios": results}


def _plan_tools(document: dict[str, Any]) -> list[str]:
    names = set()
    for step in (document.get("plan") or {}).get("steps") or []:
        if isinstance(step, dict):
            if isinstance(step.get("tool"), str):
                names.add(step["tool"])
            compensate = step.get("compensate")
            if isinstance(compensate, dict) and isinstance(compensate.get("tool"), str):
                names.add(compensate["tool"])
    return sorted(names)


def cmd_pin(args: argparse.Namespace) -> int:
    import yaml

    from gateway.workflows.manifest import read_directory

    document = read_directory(args.directory)
    offered = {t["name"]: t["definition_hash"] for t in request(args, "GET", "/v1/tools")["tools"]}
    wanted = _plan_tools(document)
    missing = [name for name in wanted if name not in offered]
    if missing:
        raise WorkflowsCliError(
            "the gateway offers you none of: " + ", ".join(missing) + " (unknown, "
            "quarantined, or no grant lets you list them)"
        )
    tools = {name: offered[name] for name in wanted}
    if args.write:
        path = args.directory / "workflow.yaml"
        manifest = yaml.safe_load(path.read_text())
        manifest["tools"] = tools
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        print(f"{path}: pinned {', '.join(wanted)}")
    else:
        print(yaml.safe_dump({"tools": tools}, sort_keys=False), end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    body = request(args, "GET", "/v1/workflows")
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"{'NAME':<24} {'VERSIONS':<30} CHANNELS")
    for workflow in body["workflows"]:
        versions = ", ".join(v["version"] for v in workflow["versions"])
        channels = ", ".join(f"{c}={v}" for c, v in sorted(workflow["channels"].items()))
        print(f"{workflow['name']:<24} {versions:<30} {channels or '-'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    name, which = _split(args.ref)
    path = _resolve_path(name, which) if which else f"/v1/workflows/{name}"
    body = request(args, "GET", path)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    if which is None:
        print(f"workflow   {name}")
        for version in body["versions"]:
            print(f"  {version['version']:<12} {version['id']}  {version['published_at']}")
        for channel, row in sorted(body["channels"].items()):
            print(f"  channel {channel:<10} -> {row['version']} (by {row['promoted_by']})")
        return 0
    manifest = body["manifest"]
    print(f"workflow   {body['name']}@{body['version']}  {body['id']}")
    print(f"hash       {body['hash']}")
    print(f"published  {body['published_at']} by {body['published_by']}")
    print(f"policy     tested against {', '.join(manifest['policy_revisions']) or '-'}")
    for tool, pinned in sorted(manifest["tools"].items()):
        print(f"tool       {tool} {pinned}")
    for step in manifest["plan"].get("steps", []):
        needs = f" after {', '.join(step['needs'])}" if step.get("needs") else ""
        what = step.get("tool") or ("approval" if "approval" in step else "sleep")
        print(f"  step {step.get('id')}: {what}{needs}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    name_a, which_a = _split(args.a)
    name_b, which_b = _split(args.b)
    if name_a != name_b or not which_a or not which_b:
        raise WorkflowsCliError("compare two versions of one workflow: NAME@A NAME@B")
    body = request(args, "GET", f"/v1/workflows/{name_a}/diff", params={"a": which_a, "b": which_b})
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"{args.a} ({body['a']['hash']}) -> {args.b} ({body['b']['hash']})")
    differences = body["differences"]
    if not differences:
        print("no differences")
    for part, change in differences.items():
        print(f"{part}: {json.dumps(change, sort_keys=True)}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    name, which = _split(args.ref)
    if which is None:
        raise WorkflowsCliError("promote a version: NAME@VERSION")
    answer = request(
        args, "POST", _resolve_path(name, which) + "/promote", body={"channel": args.channel}
    )
    if answer["status"] == "pending_approval":
        approval = answer["approval_id"]
        if args.quiet:
            print(approval)
        else:
            print(
                f"{args.ref} -> {args.channel}: waits for approval {approval} "
                f"(an approver: gateway approvals approve {approval}); then promote again"
            )
        return 2
    if not args.quiet:
        before = f" (was {answer['previous']})" if answer.get("previous") else ""
        print(f"{args.ref} -> {args.channel}: {answer['status']}{before}")
    return 0
