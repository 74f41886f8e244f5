"""This gateway beside the direct call, a bare proxy and IBM ContextForge, in one
interleaved run with one client for all (issue 15, item 1).

Each round gives every target (bench/targets.py) its turn, in an order rotated from
round to round; a turn is a fixed list of phases (`PHASES`): latency at concurrency 1,
throughput at 16 and 64 with the raw JSON-RPC client, then latency and throughput with
the MCP SDK's client. Every figure is divided by the direct call's figure of the same
round; the report gives min / median / max of those ratios over the rounds. CPU per
call of the middle process(es) is read from /proc around the c=16 run. A py-spy
profile of the gateway at c=16 follows the rounds (bench/profile_areas.py).

    .venv/bin/python -m bench.comparison [--rounds 5] [--targets direct,gateway,...]
        [--methods tools/call,resources/read,prompts/get] [--quick] [--no-profile]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bench import comparison_report, load, proc_cpu, profile_areas
from bench.clients import OK, raw_caller, sdk_caller
from bench.common import machine, write_result
from bench.methods import METHODS, Method
from bench.stats import ratio, rotated, spread
from bench.targets import ALL, Lab, Target, lab


@dataclass(frozen=True)
class Phase:
    name: str
    client: str  # "raw" or "sdk"
    concurrency: int
    max_calls: int
    max_seconds: float
    measure_cpu: bool = False


PHASES = [
    Phase("raw_c1", "raw", 1, 400, 10),
    Phase("raw_c16", "raw", 16, 3000, 8, measure_cpu=True),
    Phase("raw_c64", "raw", 64, 3000, 8),
    Phase("sdk_c1", "sdk", 1, 200, 8),
    Phase("sdk_c16", "sdk", 16, 1500, 6),
]
WARM_CALLS = 10


def quick(phases: list[Phase]) -> list[Phase]:
    """A smoke run of the harness: the same phases, a tenth of the calls and time."""
    return [
        Phase(
            p.name,
            p.client,
            p.concurrency,
            max(20, p.max_calls // 10),
            p.max_seconds / 5,
            p.measure_cpu,
        )
        for p in phases
    ]


async def turn(lab_: Lab, target: Target, method: Method, phases: list[Phase]) -> dict[str, Any]:
    """One target's phases in one round."""
    out: dict[str, Any] = {}
    measure = {**target.middle, "upstream": lab_.upstream_pid}
    for phase in phases:
        if phase.client == "raw":
            opened = raw_caller(
                target.url, target.token, method, target, connections=phase.concurrency
            )
        else:
            opened = sdk_caller(target.url, target.token, method, target)
        async with opened as call:
            await load.warm(call, WARM_CALLS)
            result = await load.run(
                call,
                concurrency=phase.concurrency,
                max_calls=phase.max_calls,
                max_seconds=phase.max_seconds,
                measure=measure if phase.measure_cpu else None,
            )
        out[phase.name] = result.summary()
    return out


def middle_cpu_ms(summary: dict[str, Any], target: Target) -> float | None:
    cpu = summary.get("cpu_ms_per_call", {})
    parts = [cpu.get(name) for name in target.middle]
    return sum(p for p in parts if p is not None) if parts and None not in parts else None


def round_ratios(rnd: dict[str, Any], targets: list[Target]) -> dict[str, dict[str, float | None]]:
    """Each target's figures over the direct call's, within one round."""
    direct = rnd["direct"]
    direct_upstream_cpu = direct["raw_c16"]["cpu_ms_per_call"].get("upstream")
    out: dict[str, dict[str, float | None]] = {}
    for target in targets:
        mine = rnd[target.name]
        out[target.name] = {
            "p50_c1": ratio(mine["raw_c1"].get("ok_p50_ms"), direct["raw_c1"].get("ok_p50_ms")),
            "p99_c1": ratio(mine["raw_c1"].get("ok_p99_ms"), direct["raw_c1"].get("ok_p99_ms")),
            "calls_per_s_c16": ratio(mine["raw_c16"]["ok_per_s"], direct["raw_c16"]["ok_per_s"]),
            "calls_per_s_c64": ratio(mine["raw_c64"]["ok_per_s"], direct["raw_c64"]["ok_per_s"]),
            # CPU of the middle per call, in upstream-calls' worth (the direct call's
            # upstream CPU per call, same round).
            "middle_cpu_c16": ratio(middle_cpu_ms(mine["raw_c16"], target), direct_upstream_cpu),
            "sdk_p50_c1": ratio(mine["sdk_c1"].get("ok_p50_ms"), direct["sdk_c1"].get("ok_p50_ms")),
            "sdk_calls_per_s_c16": ratio(
                mine["sdk_c16"]["ok_per_s"], direct["sdk_c16"]["ok_per_s"]
            ),
        }
    return out


def absolute(rounds: list[dict[str, Any]], targets: list[Target]) -> dict[str, Any]:
    """Absolute figures per target as spreads over rounds: context, not the result."""

    def over(target: Target, phase: str, key: str) -> dict[str, float] | None:
        return spread([r[target.name][phase].get(key) for r in rounds])

    return {
        t.name: {
            "p50_ms_c1": over(t, "raw_c1", "ok_p50_ms"),
            "p99_ms_c1": over(t, "raw_c1", "ok_p99_ms"),
            "calls_per_s_c16": over(t, "raw_c16", "ok_per_s"),
            "calls_per_s_c64": over(t, "raw_c64", "ok_per_s"),
            "middle_cpu_ms_c16": spread([middle_cpu_ms(r[t.name]["raw_c16"], t) for r in rounds]),
            "middle_parts_cpu_ms_c16": {
                part: spread([r[t.name]["raw_c16"]["cpu_ms_per_call"].get(part) for r in rounds])
                for part in t.middle
            },
            "upstream_cpu_ms_c16": spread(
                [r[t.name]["raw_c16"]["cpu_ms_per_call"].get("upstream") for r in rounds]
            ),
            "client_cpu_ms_c16": spread(
                [r[t.name]["raw_c16"]["cpu_ms_per_call"].get("client") for r in rounds]
            ),
            "success_share_c64": over(t, "raw_c64", "success_share"),
            "policy_denials_c64": spread([r[t.name]["raw_c64"]["policy_denials"] for r in rounds]),
            "sdk_p50_ms_c1": over(t, "sdk_c1", "ok_p50_ms"),
            "sdk_calls_per_s_c16": over(t, "sdk_c16", "ok_per_s"),
            "not_ok": not_ok(rounds, t.name),
        }
        for t in targets
    }


def not_ok(rounds: list[dict[str, Any]], name: str) -> dict[str, int]:
    """Every answer other than a success, over all phases and rounds: a run whose
    figures rest on failed calls (an expired token, a crashed process) shows here."""
    counts: Counter[str] = Counter()
    for rnd in rounds:
        for summary in rnd[name].values():
            counts.update({k: n for k, n in summary["kinds"].items() if k != OK})
    return dict(counts)


async def measure(lab_: Lab, method: Method, phases: list[Phase], rounds: int) -> dict[str, Any]:
    # A target that does not serve the method (ContextForge: tools only) sits it out.
    targets = [t for t in lab_.targets if t.serves(method.name)]
    all_pids = [lab_.upstream_pid, *(p for t in targets for p in t.middle.values())]
    await load.wait_quiet(all_pids)
    per_round: list[dict[str, Any]] = []
    loads: list[list[float]] = []
    for index in range(rounds):
        order = rotated(targets, index)
        print(f"round {index + 1}/{rounds}: {', '.join(t.name for t in order)}", flush=True)
        loads.append(proc_cpu.load_average())
        rnd = {}
        for target in order:
            rnd[target.name] = await turn(lab_, target, method, phases)
        rnd["order"] = [t.name for t in order]
        per_round.append(rnd)
    loads.append(proc_cpu.load_average())
    ratios = [round_ratios(r, targets) for r in per_round]
    keys = next(iter(ratios[0].values())).keys()
    return {
        "rounds": per_round,
        "load_average": loads,
        "ratios_per_round": ratios,
        "ratios": {
            t.name: {k: spread([r[t.name][k] for r in ratios]) for k in keys} for t in targets
        },
        "absolute": absolute(per_round, targets),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--targets", default=",".join(ALL))
    # Issue 12: a resource read and a prompt beside the tool call, in the same rounds.
    parser.add_argument("--methods", default="tools/call,resources/read,prompts/get")
    parser.add_argument("--quick", action="store_true", help="a smoke run of the harness")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--profile-seconds", type=float, default=15)
    parser.add_argument("--render", type=Path, help="only render the .md and .png of a result")
    args = parser.parse_args()
    if args.render:
        render(args.render)
        return
    names = tuple(args.targets.split(","))
    if "direct" not in names:
        raise SystemExit("the direct call is the baseline of every ratio: keep it in --targets")
    phases = quick(PHASES) if args.quick else PHASES
    report: dict[str, Any] = {
        "benchmark": "comparison",
        "machine": machine(),
        "shared_machine": True,
        "phases": [p.__dict__ for p in phases],
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as tmp, lab(Path(tmp), names) as lab_:
        for method_name in args.methods.split(","):
            print(f"== {method_name}", flush=True)
            report["methods"][method_name] = anyio.run(
                measure,
                lab_,
                METHODS[method_name],
                phases,
                args.rounds,
                backend_options={"use_uvloop": True},
            )
        gateway = next((t for t in lab_.targets if t.name == "gateway"), None)
        if gateway is not None and not args.no_profile:
            print("== py-spy profile of the gateway at c=16", flush=True)
            report["profile"] = anyio.run(
                profile_areas.profile_target,
                gateway,
                METHODS["tools/call"],
                args.profile_seconds,
                Path(tmp),
                backend_options={"use_uvloop": True},
            )
    flags = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(args).items()
        if v not in (False, None)
    ]
    report["command"] = f".venv/bin/python -m bench.comparison {' '.join(flags)}"
    # The figures first, so that a report that fails to render loses no measurement
    # (`--render FILE.json` renders it again).
    path = write_result("comparison", report, "")
    render(path.with_suffix(".json"))


def render(json_path: Path) -> None:
    report = json.loads(json_path.read_text())
    md_path = json_path.with_suffix(".md")
    md_path.write_text(comparison_report.markdown(report))
    comparison_report.plot(report, json_path.with_suffix(".png"))
    print(md_path.read_text())
    print(f"written to {md_path} (+ .json, .png)")


if __name__ == "__main__":
    main()
