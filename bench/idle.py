"""What an idle gateway spends: CPU per second of a `gateway serve` that serves nothing.

For each tree (a checkout with a `.venv`), in an order rotated from round to round,
and for each database (SQLite in a temporary folder; PostgreSQL: a new database on the
test server, ``GATEWAY_TEST_PG_URL``), it starts one gateway process with the test
configuration (bench/targets.py's: embedded engine, one upstream, executor on), waits
until the start's own work is over, then reads ``utime + stime`` of the process
(`/proc/<pid>/stat`, and per thread: the event loop's and the rest) over ``--seconds``,
and beside it the time the scheduler counted the threads running (`_on_cpu_ns`).
CPU time, unlike wall-clock time, does not move with the machine's load; the load
average is printed beside each figure all the same.

    .venv/bin/python -m bench.idle TREE_A,TREE_B [--rounds 3] [--seconds 30]
        [--databases sqlite,postgresql] [--set executor.workers=0 ...]

``--set KEY=VALUE`` (a dotted configuration key, a YAML value) changes the
configuration of every gateway, e.g. to switch one poller off and read its share.

Nothing is written to bench/results: copy what matters.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import proc_cpu
from bench.common import bench_database
from bench.targets import GRANTS
from tests.support.processes import (
    GatewayServer,
    McpUpstreamServer,
    spawn,
    wait_for_http,
    write_policy,
)

SETTLE_S = 5.0  # after /readyz: the first checkpoint, the policy's first look, etc.


def _on_cpu_ns(pid: int) -> int:
    """Nanoseconds the process's live threads ran, as the scheduler counts them
    (``/proc/<pid>/task/*/schedstat``). utime + stime are clock ticks charged to
    whichever thread runs at each tick: a poller woken by a timer, running well under
    a tick and asleep again, can be charged more or less than it ran, and how much
    moves with the machine's load. A thread that exits (an idle AnyIO worker thread,
    after 10 s) takes its count with it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _thread_ticks(pid: int) -> dict[int, int]:
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = proc_cpu.parse_stat((task / "stat").read_text())
        except (OSError, ValueError):
            continue
        ticks[stat.pid] = stat.utime + stat.stime
    return ticks


def _override(config: dict, settings: list[str]) -> None:
    for setting in settings:
        key, _, value = setting.partition("=")
        *parents, leaf = key.split(".")
        section = config
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = yaml.safe_load(value)


def idle_rate(
    tree: Path, kind: str, upstream_url: str, policy: Path, seconds: float, settings: list[str]
) -> dict:
    """ms of CPU a second of one idle gateway: the process, its event loop thread, the rest."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        url, drop = bench_database(kind, directory, "gw_idle_")
        gateway = GatewayServer.configure(
            directory / "gateway",
            upstreams=[{"name": "up", "url": upstream_url}],
            policy=policy,
            storage_url=url,
        )
        _override(gateway.config, settings)
        gateway.config_path.write_text(yaml.safe_dump(gateway.config))
        gateway.process = spawn(
            [sys.executable, "-m", "gateway", "serve", "--config", str(gateway.config_path)],
            directory / "gateway.log",
            cwd=tree,
        )
        try:
            wait_for_http(gateway.url + "/readyz", gateway.process)
            pid = gateway.process.popen.pid
            time.sleep(SETTLE_S)
            before, threads_before = proc_cpu.cpu_seconds([pid])[pid], _thread_ticks(pid)
            ran_before = _on_cpu_ns(pid)
            began = time.perf_counter()
            time.sleep(seconds)
            elapsed = time.perf_counter() - began
            after, threads_after = proc_cpu.cpu_seconds([pid])[pid], _thread_ticks(pid)
            ran_ms = (_on_cpu_ns(pid) - ran_before) / 1e6 / elapsed
            loop_ticks = threads_after.get(pid, 0) - threads_before.get(pid, 0)
            total_ms = (after - before) * 1000 / elapsed
            loop_ms = loop_ticks / proc_cpu.CLOCK_TICKS * 1000 / elapsed
            return {
                "total": total_ms,
                "loop": loop_ms,
                "others": total_ms - loop_ms,
                "scheduler": ran_ms,
            }
        finally:
            gateway.stop()
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trees", help="comma-separated checkout folders")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    kinds = args.databases.split(",")
    figures: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        upstream = McpUpstreamServer.start(directory)
        policy = write_policy(directory, GRANTS)
        try:
            for index in range(args.rounds):
                shift = index % len(trees)
                for tree in trees[shift:] + trees[:shift]:
                    for kind in kinds:
                        figure = idle_rate(tree, kind, upstream.url, policy, args.seconds, args.set)
                        load = proc_cpu.load_average()
                        figures.setdefault((str(tree), kind), []).append(figure)
                        print(
                            f"round {index} {tree.name} {kind}: {figure['total']:.1f} ms/s "
                            f"(event loop {figure['loop']:.1f}, other threads "
                            f"{figure['others']:.1f}; by the scheduler "
                            f"{figure['scheduler']:.1f}); load average {load}",
                            flush=True,
                        )
        finally:
            upstream.process.stop()
    for (tree, kind), rounds in figures.items():
        totals = [f["total"] for f in rounds]
        ran = [f["scheduler"] for f in rounds]
        print(
            f"{Path(tree).name} {kind}: {statistics.median(totals):.1f} ms/s "
            f"({min(totals):.1f}–{max(totals):.1f}), by the scheduler "
            f"{statistics.median(ran):.1f} ({min(ran):.1f}–{max(ran):.1f}), "
            f"over {len(totals)} rounds"
        )


if __name__ == "__main__":
    main()
