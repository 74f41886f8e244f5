"""`gateway runs submit|show|list|cancel|watch|diff|replay|capture`, `gateway schedules …`.

Clients of the running gateway's REST API (never the database directly; ``replay``
and ``capture``, in `gateway.cli.runs_replay`, read the database offline): a plan
submitted here is authenticated, decided by policy (``plan/submit``) and audited like
one an agent submits. The JWT comes from ``--token`` or ``$GATEWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from gateway.cli import runs_replay
from gateway.cli.remote import add_remote_options, request
from gateway.errors import GatewayError

FINISHED = ("succeeded", "failed", "cancelled")


class RunsCliError(GatewayError):
    """The gateway refused the request or could not be reached; says why."""

    code = "runs_cli_error"


def register(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="submit plans and follow their runs")
    sub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    submit = sub.add_parser(
        "submit", help="submit a plan file (JSON or YAML), or run a published workflow"
    )
    add_remote_options(submit, token_help="your JWT")
    submit.add_argument(
        "plan", type=Path, nargs="?", help="the plan file (YAML or JSON); or --workflow"
    )
    submit.add_argument(
        "--workflow", metavar="NAME@VERSION", help="run a published workflow (or NAME@CHANNEL)"
    )
    submit.add_argument("--inputs", default="{}", help="inputs as JSON, or @file.json")
    submit.add_argument("--key", help="idempotency key (same key, same run)")
    submit.add_argument("--watch", action="store_true", help="follow the run until it ends")
    submit.add_argument(
        "-q", "--quiet", action="store_true", help="print the run id only (for scripts)"
    )
    submit.set_defaults(handler=cmd_submit)

    show = sub.add_parser("show", help="one run: steps, attempts, approvals, provenance")
    add_remote_options(show, token_help="your JWT")
    show.add_argument("id", help="run id (run_…)")
    show.add_argument("--json", action="store_true", help="the API's JSON")
    show.set_defaults(handler=cmd_show)

    listing = sub.add_parser("list", help="your runs, newest first")
    add_remote_options(listing, token_help="your JWT")
    listing.add_argument(
        "--status",
        choices=["pending", "running", "waiting", *FINISHED],
        help="only runs in this state (default: all)",
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many runs (default 50)"
    )
    listing.add_argument("--json", action="store_true", help="the API's JSON")
    listing.set_defaults(handler=cmd_list)

    cancel = sub.add_parser("cancel", help="cancel a run")
    add_remote_options(cancel, token_help="your JWT")
    cancel.add_argument("id", help="run id (run_…)")
    cancel.set_defaults(handler=cmd_cancel)

    watch = sub.add_parser(
        "watch",
        help="print step changes until the run ends (or waits)",
        description="Prints each step's changes, and the approval id of a step that "
        "waits for one, until the run ends (exit 0 if it succeeded, 1 otherwise) or, "
        "with --until waiting, until it waits for a timer or an approval (exit 0).",
    )
    add_remote_options(watch, token_help="your JWT")
    watch.add_argument("id", help="run id (run_…)")
    watch.add_argument(
        "--until",
        choices=["finished", "waiting"],
        default="finished",
        help="stop when the run has finished (default), or as soon as it waits",
    )
    watch.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the ids of the approvals the run waits for when it stops",
    )
    watch.add_argument(
        "--interval", type=float, default=0.5, help="seconds between looks (default 0.5)"
    )
    watch.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="give up after this many seconds (default 3600)",
    )
    watch.set_defaults(handler=cmd_watch)

    diff = sub.add_parser(
        "diff",
        help="compare two runs: workflow versions, policy, tool definitions, approvals, steps",
        description="Compares two runs you may read: the workflow version and plan each "
        "ran, the policy engine and revision, the tool definition hashes, the approvals "
        "each needed (and who gave them), and step by step the tool, status, arguments, "
        "outputs, decisions and errors. Exit 0 when nothing differs, 1 when something does.",
    )
    add_remote_options(diff, token_help="your JWT")
    diff.add_argument("a", help="run id (run_…)")
    diff.add_argument("b", help="run id (run_…)")
    diff.add_argument("--json", action="store_true", help="the differences as JSON")
    diff.set_defaults(handler=cmd_diff)
    runs_replay.register(sub)  # replay and capture: offline, from the database

    schedules = commands.add_parser("schedules", help="plans fired on a cron schedule")
    ssub = schedules.add_subparsers(dest="schedules_command", required=True, metavar="COMMAND")
    add = ssub.add_parser("add", help="register a plan on a cron schedule (UTC)")
    add_remote_options(add, token_help="your JWT")
    add.add_argument("name", help="a name for people")
    add.add_argument("cron", help='five fields, in UTC, e.g. "0 6 * * 1-5"')
    add.add_argument("plan", type=Path, help="the plan file (YAML or JSON)")
    add.add_argument("--inputs", default="{}", help="inputs as JSON, or @file.json")
    add.add_argument(
        "-q", "--quiet", action="store_true", help="print the schedule id only (for scripts)"
    )
    add.set_defaults(handler=cmd_schedule_add)
    slist = ssub.add_parser("list", help="your schedules")
    add_remote_options(slist, token_help="your JWT")
    slist.add_argument("--json", action="store_true", help="the API's JSON")
    slist.set_defaults(handler=cmd_schedule_list)
    remove = ssub.add_parser("remove", help="remove a schedule")
    add_remote_options(remove, token_help="your JWT")
    remove.add_argument("id", help="schedule id (sch_…)")
    remove.set_defaults(handler=cmd_schedule_remove)


def _inputs(text: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (OSError, json.JSONDecodeError) as exc:
        raise RunsCliError(f"--inputs is not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise RunsCliError("--inputs must be a JSON object")
    return data


def _plan_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise RunsCliError(f"cannot read plan {path}: {exc.strerror}") from None


def cmd_submit(args: argparse.Namespace) -> int:
    if (args.plan is None) == (args.workflow is None):
        raise RunsCliError("give a plan file or --workflow NAME@VERSION (one of them)")
    body: dict[str, Any] = {"inputs": _inputs(args.inputs)}
    if args.workflow:
        body["workflow"] = args.workflow
    else:
        body["plan"] = _plan_text(args.plan)
    if args.key:
        body["idempotency_key"] = args.key
    answer = request(args, "POST", "/v1/runs", body=body)
    if args.quiet:
        print(answer["run_id"])
    else:
        created = "submitted" if answer["created"] else "exists"
        print(f"{answer['run_id']} {created}: {answer['status']}")
    if args.watch:
        args.id, args.interval, args.timeout = answer["run_id"], 0.5, 3600.0
        args.until, args.quiet = "finished", False
        return cmd_watch(args)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = request(args, "GET", f"/v1/runs/{args.id}")
    if args.json:
        print(json.dumps(run, indent=2))
        return 0
    print(f"run        {run['id']} ({run.get('name') or 'unnamed'})")
    print(f"status     {run['status']}" + (f": {run['error']['message']}" if run["error"] else ""))
    print(f"submitted  {run['created_at']} by {run['submitted_by']}")
    print(f"plan       {run['plan_hash']}, policy {run['provenance'].get('policy_revision')}")
    workflow = run.get("workflow")
    if workflow:
        channel = f" (channel {workflow['channel']})" if workflow.get("channel") else ""
        print(f"workflow   {workflow['name']}@{workflow['version']}{channel} {workflow['hash']}")
    review = run.get("review")
    if review:
        print(f"review     {review['status']}: approval {review['approval_id']}")
    print(f"tool calls {run['tool_calls']} of {run['max_tool_calls']}")
    for step in run["steps"]:
        attempts = ", ".join(a["status"] for a in step["attempts"]) or "-"
        line = f"  {step['id']:<20} {step['kind']:<8} {step['status']:<10} attempts: {attempts}"
        print(line + _awaiting(step))
    return 0


def _awaiting(step: dict[str, Any]) -> str:
    """What a waiting step needs from a person: its approval's id and the command."""
    approval = step.get("approval_id")
    if step["status"] != "waiting" or not approval:
        return ""
    return f"  needs approval {approval} (gateway approvals approve {approval})"


def _waiting_for(run: dict[str, Any]) -> list[str]:
    return [
        s["approval_id"] for s in run["steps"] if s["status"] == "waiting" and s.get("approval_id")
    ]


def cmd_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    body = request(args, "GET", "/v1/runs", params=params)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"{'ID':<26} {'STATUS':<10} {'CREATED':<25} NAME")
    for run in body["runs"]:
        print(f"{run['id']:<26} {run['status']:<10} {run['created_at']:<25} {run['name'] or ''}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    body = request(args, "POST", f"/v1/runs/{args.id}/cancel")
    print(f"{body['run_id']}: {body['status']}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    seen: dict[str, tuple[str, str | None]] = {}
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        run = request(args, "GET", f"/v1/runs/{args.id}")
        for step in run["steps"]:
            state = (step["status"], step.get("approval_id"))
            if seen.get(step["id"]) != state:
                seen[step["id"]] = state
                if not args.quiet:
                    print(f"{step['id']}: {step['status']}{_awaiting(step)}", flush=True)
        if run["status"] in FINISHED:
            if not args.quiet:
                error = f": {run['error']['message']}" if run["error"] else ""
                print(f"run {run['id']} {run['status']}{error}")
            return 0 if run["status"] == "succeeded" else 1
        if args.until == "waiting" and run["status"] == "waiting":
            if args.quiet:
                print("\n".join(_waiting_for(run)))
            else:
                print(f"run {run['id']} waiting")
            return 0
        time.sleep(args.interval)
    raise RunsCliError(f"run {args.id} did not finish within {args.timeout} s")


def cmd_diff(args: argparse.Namespace) -> int:
    from gateway.workflows.run_diff import diff_runs

    a = request(args, "GET", f"/v1/runs/{args.a}")
    b = request(args, "GET", f"/v1/runs/{args.b}")
    differences = diff_runs(a, b)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "differences": differences}, indent=2))
        return 1 if differences else 0
    if not differences:
        print(f"{args.a} and {args.b}: no differences")
        return 0
    for part in ("status", "workflow", "plan_hash", "policy", "gateway_version", "inputs"):
        if part in differences:
            change = differences[part]
            print(f"{part:<16} {json.dumps(change['a'])} -> {json.dumps(change['b'])}")
    for part in ("tools", "approvals"):
        if part in differences:
            print(f"{part:<16} {json.dumps(differences[part], sort_keys=True)}")
    steps = differences.get("steps", {})
    for step_id in steps.get("added", []):
        print(f"  step {step_id}: only in {args.b}")
    for step_id in steps.get("removed", []):
        print(f"  step {step_id}: only in {args.a}")
    for step_id, fields in steps.get("changed", {}).items():
        for name, change in fields.items():
            before, after = json.dumps(change["a"]), json.dumps(change["b"])
            print(f"  step {step_id}: {name} {before} -> {after}")
    return 1


def cmd_schedule_add(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "cron": args.cron,
        "plan": _plan_text(args.plan),
        "inputs": _inputs(args.inputs),
    }
    schedule = request(args, "POST", "/v1/schedules", body=body)
    if args.quiet:
        print(schedule["id"])
    else:
        print(f"{schedule['id']} {schedule['name']}: next run {schedule['next_fire_at']}")
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    body = request(args, "GET", "/v1/schedules")
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"{'ID':<20} {'NAME':<20} {'CRON':<16} NEXT")
    for s in body["schedules"]:
        print(f"{s['id']:<20} {s['name']:<20} {s['cron']:<16} {s['next_fire_at']}")
    return 0


def cmd_schedule_remove(args: argparse.Namespace) -> int:
    request(args, "DELETE", f"/v1/schedules/{args.id}")
    print(f"{args.id} removed")
    return 0
