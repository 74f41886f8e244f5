"""`gateway runs replay` and `gateway runs capture`: a recorded run against a candidate
workflow and/or policy, and a run turned into a scenario.

Unlike the other ``runs`` commands these read the gateway's database (``--config``, as
``gateway policy replay`` does) and call no upstream and not the gateway: the tool
results are the run's recording, proven against the audit log
(`gateway.workflows.recorded_run`).

Exit status of ``replay``, as ``policy replay``: 0, or 1 when a difference matches
``--fail-on`` or a recording is not verified; 2 for usage errors (an unknown or
unfinished run, an unknown workflow, a candidate policy that does not compile).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import add_config_option, config_from

if TYPE_CHECKING:
    from gateway.config import Config

EXIT_DIFFERENCES = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay",
        help="re-execute a recorded run against a candidate workflow and/or policy, offline",
        description="Re-executes run RUN_ID's plan (or --workflow's) with the run's inputs: "
        "every decision from the candidate policy (--policy, else the gateway's), every "
        "tool result from the run's recording, checked against the audit log (no upstream "
        "is called). Prints per step what differs from the recorded run.",
    )
    replay.add_argument("id", help="run id (run_…), a finished run")
    replay.add_argument(
        "--workflow", metavar="NAME@VERSION", help="a published version (or NAME@CHANNEL)"
    )
    replay.add_argument("--policy", type=Path, help="candidate policy folder")
    add_config_option(replay)
    replay.add_argument(
        "--fail-on",
        choices=["difference", "failure"],
        help="exit 1 when anything differs (difference) or when the replayed run does not "
        "succeed (failure)",
    )
    replay.add_argument("--json", action="store_true", help="one JSON document")
    replay.set_defaults(handler=cmd_replay)

    capture = sub.add_parser(
        "capture",
        help="turn a finished run into a workflow scenario (for `workflows test`)",
        description="Writes DIR/scenarios/NAME.yaml: the run's inputs and proven tool "
        "results, as they may be recorded, and what to expect. The file is outside the "
        "gateway's erasure scope.",
    )
    capture.add_argument("id", help="run id (run_…), a finished run")
    capture.add_argument("--out", type=Path, required=True, help="the workflow directory")
    capture.add_argument("--name", help="the scenario's name (default: the run id)")
    capture.add_argument(
        "--expect",
        choices=["succeeded", "recorded"],
        default="succeeded",
        help="expect the run to succeed (default: a regression case), or what it did",
    )
    add_config_option(capture)
    capture.set_defaults(handler=cmd_capture)


def _usage(message: str) -> int:
    print(f"gateway: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.errors import PolicyLoadError
    from gateway.store import create_engine
    from gateway.workflows.errors import WorkflowError
    from gateway.workflows.recorded_run import RecordingNotUsable, load_recorded_run

    config = config_from(args)
    database = create_engine(config.storage.url)
    try:
        recorded = load_recorded_run(database, args.id)
        plan, workflow = _candidate(database, recorded, args.workflow)
        report = asyncio.run(_replay(database, config, recorded, plan, workflow, args.policy))
    except PolicyLoadError as exc:
        return _usage(f"candidate policy: {exc.message}")
    except (RecordingNotUsable, WorkflowError) as exc:
        return _usage(exc.message)
    finally:
        database.dispose()
    failed = bool(report["unverified"]) or _fails(report, args.fail_on)
    if args.json:
        print(json.dumps({**report, "fail_on": args.fail_on, "failed": failed}, indent=2))
    else:
        _print_text(report, args.fail_on, failed)
    return EXIT_DIFFERENCES if failed else 0


def _fails(report: dict[str, Any], fail_on: str | None) -> bool:
    if fail_on == "difference":
        return bool(report["differences"])
    if fail_on == "failure":
        return report["replayed"]["status"] != "succeeded"
    return False


def _candidate(database: Any, recorded: Any, ref: str | None) -> tuple[Any, Any]:
    from gateway.executor.plan import parse_plan
    from gateway.workflows.errors import WorkflowNotFound
    from gateway.workflows.store import WorkflowStore

    if ref is None:
        return parse_plan(recorded.plan), recorded.workflow
    name, _, which = ref.partition("@")
    if not name or not which:
        raise WorkflowNotFound(f"name a workflow as NAME@VERSION or NAME@CHANNEL, not {ref!r}")
    store = WorkflowStore(database)
    published, channel = store.find(name, which), None
    if published is None:
        pointed = store.channel(name, which)
        if pointed is None:
            raise WorkflowNotFound(f"no workflow version or channel {ref}")
        published, channel = store.get(name, pointed["version"]), which
    return published.manifest.to_plan(), published.manifest.to_ref(channel=channel).to_policy()


def candidate_engine(
    config: Config, policy: Path | None
) -> tuple[Callable[[dict[str, Any]], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    """How to decide, fail closed, and how to close the engine after: with the policy
    folder ``policy`` (compiled here, with the config's data and limits), else the
    gateway's own (the config's policy, compiled here, or its OPA server). Raises
    `PolicyLoadError` for a policy that does not compile."""
    from gateway.components import build_policy_engine
    from gateway.config import EmbeddedPolicyConfig
    from gateway.policy.embedded import folder_engine
    from gateway.policy.engine import decide

    settings = config.policy
    if policy is None:
        engine: Any = build_policy_engine(config)
        timeout_s = settings.timeout_ms / 1000
    else:
        embedded = (
            settings if isinstance(settings, EmbeddedPolicyConfig) else EmbeddedPolicyConfig()
        )
        engine, timeout_s = folder_engine(embedded, policy), embedded.timeout_ms / 1000

    async def decide_input(policy_input: dict[str, Any]) -> Any:
        return await decide(engine, policy_input, timeout_s=timeout_s)

    return decide_input, engine.close


async def _replay(
    database: Any,
    config: Config,
    recorded: Any,
    plan: Any,
    workflow: Any,
    policy: Path | None,
) -> dict[str, Any]:
    from gateway.logs import new_request_id
    from gateway.workflows.pinned_tools import pinned_tools
    from gateway.workflows.replay import replay_run

    decide, close = candidate_engine(config, policy)
    try:
        return await replay_run(
            recorded,
            plan,
            workflow,
            decide,
            pinned_tools(database, config.upstreams),
            request_id=new_request_id(),
        )
    finally:
        await close()


def _print_text(report: dict[str, Any], fail_on: str | None, failed: bool) -> None:
    recorded, replayed = report["recorded"], report["replayed"]

    def label(side: dict[str, Any]) -> str:
        workflow = side["workflow"]
        plan = f"{workflow['name']}@{workflow['version']}" if workflow else "ad hoc plan"
        policy = side["policy"]
        return f"{plan}, policy {policy['engine']} {policy['revision']}"

    print(f"run        {report['run_id']}")
    print(f"recorded   {label(recorded)}: {_outcome(recorded)}")
    print(f"replayed   {label(replayed)}: {_outcome(replayed)}")
    for step_id, found in report["recordings"].items():
        if step_id in report["unverified"]:
            print(f"recording  {step_id}: {found}")
    differences = report["differences"]
    if not differences:
        print("no differences")
    if "plan_submit" in differences:
        change = differences["plan_submit"]
        print(f"plan/submit  {json.dumps(change['recorded'])} -> {json.dumps(change['replayed'])}")
    steps = differences.get("steps", {})
    for step_id in steps.get("added", []):
        print(f"  step {step_id}: added")
    for step_id in steps.get("removed", []):
        print(f"  step {step_id}: removed")
    for step_id, fields in steps.get("changed", {}).items():
        for name, change in fields.items():
            before, after = json.dumps(change["recorded"]), json.dumps(change["replayed"])
            print(f"  step {step_id}: {name} {before} -> {after}")
    for step_id, state in report["steps"].items():
        error = state.get("error") or {}
        if error.get("code") in ("recording_not_verified", "no_recording"):
            print(f"  step {step_id}: {error['message']}")
    if report["unverified"]:
        print(f"recording not verified: {', '.join(report['unverified'])}")
    elif fail_on:
        print(f"{'fails' if failed else 'passes'} --fail-on {fail_on}")


def _outcome(side: dict[str, Any]) -> str:
    return side["status"] + (f" ({side['error']})" if side.get("error") else "")


def cmd_capture(args: argparse.Namespace) -> int:
    import yaml

    from gateway.errors import GatewayError
    from gateway.store import create_engine
    from gateway.workflows.capture import HEADER, capture_scenario
    from gateway.workflows.recorded_run import load_recorded_run

    config = config_from(args)
    database = create_engine(config.storage.url)
    try:
        scenario = capture_scenario(load_recorded_run(database, args.id), expect=args.expect)
    except GatewayError as exc:
        return _usage(exc.message)
    finally:
        database.dispose()
    name = args.name or args.id
    if not name.replace("-", "").replace("_", "").isalnum():
        return _usage(f"a scenario name is letters, digits, - and _, not {name!r}")
    path = args.out / "scenarios" / f"{name}.yaml"
    if path.exists():
        return _usage(f"{path} exists: remove it or choose another --name")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True)
    path.write_text(HEADER.format(run_id=args.id) + text)
    print(f"{path}: scenario {name} from {args.id} (outside the gateway's erasure scope)")
    return 0
