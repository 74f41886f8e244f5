"""Scaling with size: 10 vs 1,000 catalog tools, 10 k vs 1 M audit entries (issue 15,
item 6). Nothing on the `tools/call` path should grow with either.

Three gateways, each with its own upstream (bench/catalog_upstream.py) and log:

- ``small``: an upstream of 10 tools, a log prefilled with 10,000 entries;
- ``many_tools``: an upstream of 1,000 tools (``--tools``), a log of 10,000 entries;
- ``big_log``: an upstream of 10 tools, a log of 1,000,000 entries (``--audit-entries``);

plus both upstreams called directly. The logs are prefilled before the gateways start,
through the audit's own batch writer (`gateway.audit.batch.write_batch`, the chain and
leaf format the gateway writes; one prepared call.attempt-sized record reused, 50,000
entries per transaction), bounded by ``--prefill-seconds``: the report gives the count
reached. The gateway's start on the big log (its checkpointer builds the Merkle tree
over it) is timed until its process is quiet, and measuring starts after that.

Then, in rotated rounds, latency at c=1 of `tools/call` and `tools/list` on each; the
ratios ``many_tools / small`` and ``big_log / small`` are taken within each round.

    .venv/bin/python -m bench.scaling [--tools 1000] [--audit-entries 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from bench import load, proc_cpu
from bench.audit_log import record
from bench.clients import raw_caller
from bench.common import machine, write_result
from bench.methods import METHODS
from bench.stats import fmt_spread, ratio, rotated, spread
from bench.targets import GRANTS, TOKEN_TTL_S, Target, gateway_rename
from gateway.audit.batch import prepare_record, write_batch
from gateway.store import create_engine, migrate
from tests.support.processes import GatewayServer, free_port, spawn, wait_for_port, write_policy

ORIGIN = "test.gateway/audit"  # the origin tests/support/processes.py configures
PREFILL_TRANSACTION = 50_000


def prefill(database: Path, entries: int, budget_s: float) -> dict[str, Any]:
    """Writes up to ``entries`` audit entries into a new log; stops at ``budget_s``."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        migrate(engine)
        batch = [prepare_record(record(i)) for i in range(5000)]
        started, written = time.perf_counter(), 0
        while written < entries and time.perf_counter() - started < budget_s:
            size = min(PREFILL_TRANSACTION, entries - written)
            groups = [batch[: min(5000, size - g)] for g in range(0, size, 5000)]
            write_batch(engine, ORIGIN, groups)
            written += size
        return {"entries": written, "seconds": round(time.perf_counter() - started, 1)}
    finally:
        engine.dispose()


@contextlib.contextmanager
def setup(directory: Path, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    policy = write_policy(directory, GRANTS)
    with contextlib.ExitStack() as stack:
        upstreams: dict[int, str] = {}
        for tools in sorted({10, args.tools}):
            port = free_port()
            process = spawn(
                [sys.executable, "-m", "bench.catalog_upstream", str(port), str(tools)],
                directory / f"upstream-{tools}.log",
            )
            stack.callback(process.stop)
            wait_for_port(port, process)
            upstreams[tools] = f"http://127.0.0.1:{port}/mcp"
        plan = {
            "small": (10, 10_000),
            "many_tools": (args.tools, 10_000),
            "big_log": (10, args.audit_entries),
        }
        facts: dict[str, Any] = {}
        targets: list[Target] = [
            Target(f"direct_{tools}", url, "bench", lambda n: n) for tools, url in upstreams.items()
        ]
        for name, (tools, entries) in plan.items():
            folder = directory / name
            folder.mkdir()
            print(f"{name}: prefilling {entries} audit entries", flush=True)
            filled = prefill(folder / "gateway.db", entries, args.prefill_seconds)
            gateway = GatewayServer.configure(
                folder, upstreams=[{"name": "up", "url": upstreams[tools]}], policy=policy
            )
            started = time.perf_counter()
            gateway.start()
            stack.callback(gateway.stop)
            assert gateway.process is not None
            pid = gateway.process.popen.pid
            quiet = anyio.run(load.wait_quiet, [pid])
            facts[name] = {
                "tools": tools,
                "prefill": filled,
                "start_until_quiet_s": round(time.perf_counter() - started, 1),
                "quiet_wait_s": round(quiet, 1),
                "db_mb": round((folder / "gateway.db").stat().st_size / 1e6, 1),
            }
            targets.append(
                Target(
                    name,
                    gateway.mcp_url,
                    gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S),
                    gateway_rename,
                    {name: pid},
                )
            )
        yield {"targets": targets, "facts": facts}


async def measure(targets: list[Target], args: argparse.Namespace) -> list[dict[str, Any]]:
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}", flush=True)
        rnd: dict[str, Any] = {"load_average": proc_cpu.load_average()}
        for method_name, calls in (("tools/call", args.calls), ("tools/list", args.list_calls)):
            rnd[method_name] = {}
            for target in rotated(targets, index):
                async with raw_caller(
                    target.url, target.token, METHODS[method_name], target
                ) as call:
                    await load.warm(call, 3)
                    result = await load.run(
                        call,
                        concurrency=1,
                        max_calls=calls,
                        max_seconds=args.seconds,
                        measure=target.middle,
                    )
                rnd[method_name][target.name] = result.summary()
        rounds.append(rnd)
    return rounds


def compare(rounds: list[dict[str, Any]], tools: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = {"many_tools / small": ("many_tools", "small"), "big_log / small": ("big_log", "small")}
    for method in ("tools/call", "tools/list"):
        out[method] = {}
        for label, (big, small) in pairs.items():
            out[method][label] = {
                key: spread(
                    [ratio(r[method][big].get(key), r[method][small].get(key)) for r in rounds]
                )
                for key in ("ok_p50_ms", "ok_p99_ms")
            }
        # The upstream's own growth, for comparison.
        out[method][f"direct_{tools} / direct_10"] = {
            key: spread(
                [
                    ratio(r[method][f"direct_{tools}"].get(key), r[method]["direct_10"].get(key))
                    for r in rounds
                ]
            )
            for key in ("ok_p50_ms", "ok_p99_ms")
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    m, args, facts = report["machine"], report["args"], report["facts"]
    fact_rows = "\n".join(
        f"| {name} | {f['tools']} | {f['prefill']['entries']:,} ({f['prefill']['seconds']} s) | "
        f"{f['db_mb']} MB | {f['start_until_quiet_s']} s |"
        for name, f in facts.items()
    )
    rows = []
    for method, labels in report["ratios"].items():
        for label, keys in labels.items():
            rows.append(
                f"| `{method}` | {label} | {fmt_spread(keys['ok_p50_ms'])} | {fmt_spread(keys['ok_p99_ms'])} |"
            )
    absolute = []
    for method in ("tools/call", "tools/list"):
        for name in report["rounds"][0][method]:
            p50 = spread([r[method][name].get("ok_p50_ms") for r in report["rounds"]])
            cpu = spread([r[method][name]["cpu_ms_per_call"].get(name) for r in report["rounds"]])
            absolute.append(
                f"| `{method}` | {name} | {fmt_spread(p50, 3, ' ms')} | {fmt_spread(cpu, 3, ' ms')} |"
            )
    return f"""# Scaling with the catalog and the audit log

Machine: {m["cpu"]}, {m["cores"]} cores, Python {m["python"]}, commit {m["commit"]}, {m["date"]}.
The machine was shared with other work. Gateway with the embedded engine and its
defaults; raw JSON-RPC client, c=1, {args["rounds"]} rotated rounds (at most
{args["calls"]} `tools/call` / {args["list_calls"]} `tools/list` calls or {args["seconds"]} s per
target and round). Load average before each round: {", ".join(str(r["load_average"][0]) for r in report["rounds"])}.
Command: `.venv/bin/python -m bench.scaling --tools {args["tools"]} --audit-entries {args["audit_entries"]} --rounds {args["rounds"]}`

| gateway | catalog tools | audit entries (prefill time) | database | start until quiet |
| --- | --- | --- | --- | --- |
{fact_rows}

Ratios within each round, median (min–max):

| method | ratio | p50 | p99 |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Absolute (median over rounds, min–max; the gateway's CPU per call where measured):

| method | target | p50 | gateway CPU per call |
| --- | --- | --- | --- |
{chr(10).join(absolute)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", type=int, default=1000)
    parser.add_argument("--audit-entries", type=int, default=1_000_000)
    parser.add_argument("--prefill-seconds", type=float, default=240)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--list-calls", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, setup(Path(tmp), args) as lab_:
        rounds = anyio.run(measure, lab_["targets"], args, backend_options={"use_uvloop": True})
        facts = lab_["facts"]
    report = {
        "benchmark": "scaling",
        "machine": machine(),
        "shared_machine": True,
        "args": vars(args),
        "facts": facts,
        "rounds": rounds,
        "ratios": compare(rounds, args.tools),
    }
    path = write_result("scaling", report, markdown(report))
    print(path.read_text())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
