"""The gateway with one component at a time taken out: what each really costs (issue 15).

py-spy's area shares say where the gateway's threads stand, which overstates code at
which they wait for the GIL or a core (results/cpu-20261207-ab.md). This benchmark
takes a component out instead and measures the difference: it makes a tree of the
checked-out commit (`git archive HEAD`) per variant, applies to each the bench-only
patches of `bench/ablation/` (unified diffs, a few lines each; nothing of them is in
the gateway), and runs `bench.ab_gateways.serve` over the trees and the bare proxy:
one upstream, rotated rounds, CPU per `tools/call` at c=16 (also less the idle rate),
calls/s at c=16 and p50 at c=1, each as a ratio to the direct call of the same turn,
and every variant paired with ``full`` round by round (ratio and difference).

- ``full``: the tree as it is (embedded engine on OPA's Wasm, durable SQLite audit);
- ``no-policy``: the pipeline's question to the policy (`Decider.decide`: the queue,
  the deadline, the engine) replaced by the decision the shipped policy gives a plain
  allowed call (allow, rule ``grant``, "allowed by grant", no obligations); the input
  is still built, the decision still recorded;
- ``no-durable-audit``: SQLite ``synchronous=OFF`` on the gateway's database: the
  audit commits without an fsync, all its bookkeeping kept;
- ``no-audit``: `AuditLog.append` and `submit` answer at once with made-up seqs,
  preparing and writing nothing (the records are still built by the pipeline);
- ``floor``: ``no-policy`` + ``no-audit``: HTTP server, ASGI, MCP parsing, pipeline
  glue and the upstream client.

Before measuring it checks that each variant does what it says (``--check-only``
alone): with a policy granting nothing, whether calls are denied (the engine asked)
or answered (not asked); py-spy samples in the engine's ``evaluate`` at c=16;
fsync/fdatasync per call (strace) and the audit entries each call left in the
database. Writes ``<out>.json`` and ``<out>.md`` (the figures and checks; the reading
is the reader's).

    GATEWAY_OPA=.tools/opa/v1.22.0/opa .venv/bin/python -m bench.ablation \\
        [--rounds 4] [--seconds 10] [--variants full,no-policy,...] [--out PATH]

strace and py-spy need ptrace (root or ``CAP_SYS_PTRACE``); ``--no-check`` skips them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from bench import ab_gateways, load
from bench.clients import raw_caller
from bench.methods import METHODS
from bench.targets import GRANTS, TOKEN_TTL_S, Target, gateway_rename
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

REPO = Path(__file__).resolve().parent.parent
PATCHES = Path(__file__).resolve().parent / "ablation"
VARIANTS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no-policy": ("no-policy",),
    "no-durable-audit": ("no-durable-audit",),
    "no-audit": ("no-audit",),
    "floor": ("no-policy", "no-audit"),
}


def make_trees(directory: Path, names: list[str]) -> list[Path]:
    """A tree of HEAD per variant under ``directory``, its patches applied, with the
    repository's ``.venv`` and ``.tools`` linked in (as ab_gateways expects)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    trees = []
    for name in names:
        tree = directory / name
        tree.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        for link in (".venv", ".tools"):
            if (REPO / link).exists():
                (tree / link).symlink_to((REPO / link).resolve())
        for patch in VARIANTS[name]:
            diff = PATCHES / f"{patch}.diff"
            subprocess.run(
                ["patch", "-p1", "--batch", "--quiet", "-d", str(tree), "-i", str(diff)], check=True
            )
        trees.append(tree)
    return trees


# --- checks: does each variant do what it says? ----------------------------------------


async def _calls(target: Target, calls: int, *, seconds: float = 30) -> Counter[str]:
    method = METHODS["tools/call"]
    async with raw_caller(target.url, target.token, method, target, connections=16) as c:
        result = await load.run(c, concurrency=16, max_calls=calls, max_seconds=seconds)
    return result.kinds


@contextlib.contextmanager
def _traced(argv: list[str], output: Path, *, stop: bool) -> Any:
    process = subprocess.Popen(
        [*argv, "-o", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        if stop:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _syncs(summary: Path) -> int:
    """fsync + fdatasync calls in an ``strace -c`` summary."""
    count = 0
    for line in summary.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in ("fsync", "fdatasync"):
            count += int(fields[3])
    return count


def _samples(raw: Path, needle: str) -> tuple[int, int]:
    """py-spy ``--format raw`` samples whose stack holds ``needle``, and all samples."""
    found = total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        if needle in stack:
            found += int(count)
    return found, total


def _audit_kinds(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT kind, count(*) FROM audit_entries GROUP BY kind").fetchall()
    return dict(sorted(rows))


def _serve(directory: Path, tree: Path, upstream: McpUpstreamServer, policy: Path) -> Any:
    gateway = GatewayServer.configure(
        directory,
        upstreams=[{"name": "up", "url": upstream.url}],
        policy_config={"path": str(policy)},
    )
    ab_gateways.start(gateway, tree)
    assert gateway.process is not None
    token = gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S)
    target = Target(tree.name, gateway.mcp_url, token, gateway_rename)
    return gateway, target


def check(trees: list[Path], directory: Path) -> dict[str, dict[str, Any]]:
    """Per variant: answers under a policy granting nothing; then, under the bench's
    grants, fsyncs per call (strace, 400 calls at c=16), py-spy samples in the
    engine's ``evaluate`` (5 s at c=16) and the audit entries left by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    upstream = McpUpstreamServer.start(directory)
    granted = write_policy(directory / "granted", GRANTS)
    nothing = write_policy(directory / "nothing", [])
    spy = str(Path(sys.executable).parent / "py-spy")
    found: dict[str, dict[str, Any]] = {}
    try:
        for tree in trees:
            mine: dict[str, Any] = {}
            gateway, target = _serve(directory / f"check-{tree.name}-deny", tree, upstream, nothing)
            try:
                mine["answers_granting_nothing"] = dict(anyio.run(_calls, target, 50))
            finally:
                gateway.stop()
            gateway, target = _serve(directory / f"check-{tree.name}", tree, upstream, granted)
            pid = gateway.process.popen.pid
            try:
                anyio.run(_calls, target, 50)  # warm
                summary = gateway.directory / "strace.txt"
                argv = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-p", str(pid)]
                with _traced(argv, summary, stop=True):
                    kinds = anyio.run(_calls, target, 400)
                time.sleep(0.5)
                calls = sum(kinds.values())
                mine["syncs_per_call"] = round(_syncs(summary) / calls, 3)
                raw = gateway.directory / "py-spy.txt"
                argv = [spy, "record", "--pid", str(pid), "--duration", "5", "--rate", "250"]
                argv += ["--format", "raw", "--nonblocking"]
                with _traced(argv, raw, stop=False):
                    kinds += anyio.run(functools.partial(_calls, target, 100_000, seconds=4))
                evaluate, total = _samples(raw, "evaluate (gateway/policy/")
                mine["engine_evaluate_samples"] = [evaluate, total]
                mine["answers"] = dict(kinds)
            finally:
                gateway.stop()
            mine["calls_made"] = 50 + sum(kinds.values())
            mine["audit_entries"] = _audit_kinds(gateway.directory / "gateway.db")
            found[tree.name] = mine
            print(f"check {tree.name}: {mine}", flush=True)
    finally:
        upstream.process.stop()
    return found


# --- the report ------------------------------------------------------------------------


def _spread(values: list[float], digits: int = 3) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def paired(figures: dict[str, dict[str, list[float]]], base: str) -> dict[str, Any]:
    """Every target against ``base`` round by round: ratio and difference (base minus
    the target: what the component taken out costs) of CPU per call and less idle."""
    out: dict[str, Any] = {}
    for name, mine in figures.items():
        if name == base:
            continue
        entry = {}
        for figure in ("cpu", "net"):
            pairs = list(zip(figures[base][figure], mine[figure], strict=True))
            entry[f"{figure}_ratio"] = [round(b / a, 3) for a, b in pairs]
            entry[f"{figure}_saved_ms"] = [round(a - b, 3) for a, b in pairs]
        out[name] = entry
    return out


def _machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_report(out: Path, run: dict[str, Any]) -> None:
    out.with_suffix(".json").write_text(json.dumps(run, indent=1) + "\n")
    figures: dict[str, dict[str, list[float]]] = run["figures"]
    names = list(figures)
    base = names[0]
    lines = [
        "# Ablation: the gateway with one component at a time taken out (issue 15)",
        "",
        f"Machine: {run['machine']}; commit {run['commit']}; {run['started']} – "
        f"{run['finished']}. Command: `{run['command']}`.",
        f"1-minute load average at each turn: {run['load_range']}.",
        "",
        "## Medians over rounds (min–max)",
        "",
        "| target | CPU per call, c=16 (ms) | less idle (ms) | idle (ms/s) | calls/s c=16 "
        "| × direct | p50 c=1 (ms) | × direct |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, mine in figures.items():
        lines.append(
            f"| {name} | {_spread(mine['cpu'])} | {_spread(mine['net'])} | "
            f"{_spread(mine['idle'], 1)} | {_spread(mine['calls_s'], 0)} | "
            f"{_spread(mine['share'])} | {_spread(mine['p50'], 2)} | {_spread(mine['p50_x'], 2)} |"
        )
    lines += [
        "",
        f"## Paired with `{base}`, per round",
        "",
        "Ratio: the target's CPU per call / the base's in the same round. Saved: the "
        "base's minus the target's, ms per call (what the component taken out costs).",
        "",
        "| target | CPU ratio | CPU saved (ms) | less idle: ratio | less idle: saved (ms) "
        "| median saved (ms), CPU / less idle |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in run["paired"].items():
        lines.append(
            f"| {name} | {entry['cpu_ratio']} | {entry['cpu_saved_ms']} | "
            f"{entry['net_ratio']} | {entry['net_saved_ms']} | "
            f"{statistics.median(entry['cpu_saved_ms']):.3f} / "
            f"{statistics.median(entry['net_saved_ms']):.3f} |"
        )
    lines += [
        "",
        "## Every turn",
        "",
        "| round | target | load | CPU (ms) | less idle | idle (ms/s) | calls/s | direct "
        "calls/s | × direct | p50 (ms) | direct p50 | × direct |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rounds = len(figures[base]["cpu"])
    for index in range(rounds):
        for name, m in figures.items():
            lines.append(
                f"| {index} | {name} | {m['load'][index]:.2f} | {m['cpu'][index]:.3f} | "
                f"{m['net'][index]:.3f} | {m['idle'][index]:.1f} | {m['calls_s'][index]:.0f} | "
                f"{m['direct_calls_s'][index]:.0f} | {m['share'][index]:.3f} | "
                f"{m['p50'][index]:.2f} | {m['direct_p50'][index]:.2f} | "
                f"{m['p50_x'][index]:.2f} |"
            )
    if run.get("checks"):
        lines += ["", "## Checks (before the rounds)", "", "```text"]
        lines += [f"{name}: {json.dumps(found)}" for name, found in run["checks"].items()]
        lines += ["```"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, help="pace the c=16 runs (ab_gateways --rate)")
    parser.add_argument("--no-bare-proxy", action="store_true")
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--out", type=Path, help="results path without suffix")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    today = datetime.datetime.now(datetime.UTC)
    out = args.out or REPO / "bench" / "results" / f"ablation-{today:%Y%m%d}"
    directory = Path(tempfile.mkdtemp(prefix="bench-ablation-"))
    trees = make_trees(directory, names)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    run: dict[str, Any] = {
        "machine": _machine(),
        "commit": commit,
        "command": " ".join(["python -m bench.ablation", *sys.argv[1:]]),
        "started": f"{today:%Y-%m-%dT%H:%MZ}",
        "trees": str(directory),
    }
    if not args.no_check:
        run["checks"] = check(trees, directory / "checks")
        if args.check_only:
            print(json.dumps(run["checks"], indent=1))
            return
    figures = ab_gateways.serve(
        trees,
        METHODS["tools/call"],
        args.rounds,
        args.seconds,
        args.rate,
        bare_proxy=not args.no_bare_proxy,
    )
    loads = [value for mine in figures.values() for value in mine["load"]]
    run["finished"] = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H:%MZ}"
    run["load_range"] = f"{min(loads):.2f}–{max(loads):.2f}"
    run["figures"] = figures
    run["paired"] = paired(figures, next(iter(figures)))  # "0:full" or so
    write_report(out, run)
    print(f"wrote {out}.md and .json")


if __name__ == "__main__":
    main()
