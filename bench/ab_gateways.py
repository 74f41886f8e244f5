"""Gateways of several checkouts on one upstream, in rotated rounds: a before/after.

Each tree (a checkout or `git archive` of a commit, with a `.venv`: the repository's
own, or another interpreter's with the same lock synced into it, which the tree's
gateway runs on) serves `gateway serve` with the test configuration
(bench/targets.py: embedded engine, durable SQLite audit) in front of one shared
upstream. Each round measures, for every tree in an order rotated from round to
round: the direct call at c=16 and at c=1 (the turn's baseline), the gateway at c=16
(calls/s and its CPU per call) and at c=1 (p50). It prints each round, the medians
with their spread, and the per-round ratio of every tree's CPU per call to the first
tree's: on a shared machine the paired ratio is
the figure to read (docs/decisions/0026 decided the fast paths on it). Each gateway's
idle CPU rate is read while the direct call runs (the gateway idle), and the CPU per
call is also given less that rate: on a loaded machine the calls/s swing, and the idle
pollers' share of a call with them.

    .venv/bin/python -m bench.ab_gateways TREE_A,TREE_B[,...] [--rounds 4]
        [--method tools/call]

A variant is a tree with one change, e.g. the direct path switched off in
gateway/surfaces/mcp.py (bench/ablation.py makes such trees and runs `serve` over
them). Nothing is written to bench/results: copy what matters.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import yaml

from bench import load
from bench.clients import raw_caller
from bench.methods import METHODS, Method
from bench.targets import GRANTS, TOKEN_TTL_S, Target, gateway_rename, start_proxy
from tests.support.processes import (
    GatewayServer,
    McpUpstreamServer,
    spawn,
    wait_for_http,
    write_policy,
)


def interpreter(tree: Path) -> str:
    """The Python a tree's gateway runs on: its own ``.venv``'s when it has one (to
    compare interpreters or dependency versions), else this benchmark's."""
    own = tree / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def start(gateway: GatewayServer, tree: Path) -> GatewayServer:
    gateway.config_path.write_text(yaml.safe_dump(gateway.config))
    gateway.process = spawn(
        [interpreter(tree), "-m", "gateway", "serve", "--config", str(gateway.config_path)],
        gateway.directory / "gateway.log",
        cwd=tree,  # the tree's own `gateway` package
    )
    wait_for_http(gateway.url + "/healthz", gateway.process)
    return gateway


async def measure(
    targets: list[Target],
    upstream: McpUpstreamServer,
    method: Method,
    rounds: int,
    seconds: float,
    rate: float | None,
) -> dict[str, dict[str, list[float]]]:
    """Every target's figures by name, one value per round: ``cpu``, ``net`` (less
    idle), ``idle`` (ms/s), ``calls_s`` and ``share`` (× direct) at c=16, ``p50`` and
    ``p50_x`` (× direct) at c=1, the turn's ``direct_calls_s``, ``direct_p50`` and
    1-minute ``load`` average."""
    pids = [upstream.process.popen.pid] + [t.middle["gateway"] for t in targets]
    await load.wait_quiet(pids)
    figures: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
    direct = Target("direct", upstream.url, targets[0].token, lambda n: n)
    for index in range(rounds):
        shift = index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            load_1m = os.getloadavg()[0]
            async with raw_caller(direct.url, direct.token, method, direct, connections=16) as c:
                await load.warm(c, 10)
                # The gateway sits idle meanwhile: its CPU over this run is its idle
                # rate (pollers: the executor's claims, the checkpointer), taken off
                # its busy CPU below.
                direct_run = await load.run(
                    c,
                    concurrency=16,
                    max_calls=1500,
                    max_seconds=3,
                    measure={"gateway": target.middle["gateway"]},
                )
                baseline = direct_run.summary()
                idle_per_s = direct_run.cpu_s["gateway"] / direct_run.elapsed_s
            async with raw_caller(direct.url, direct.token, method, direct, connections=1) as c:
                await load.warm(c, 10)
                direct_alone = (
                    await load.run(c, concurrency=1, max_calls=400, max_seconds=4)
                ).summary()
            async with raw_caller(target.url, target.token, method, target, connections=16) as c:
                await load.warm(c, 20)
                busy_run = await load.run(
                    c,
                    concurrency=16,
                    max_calls=int(seconds * 400),
                    max_seconds=seconds,
                    measure={"gateway": target.middle["gateway"]},
                    rate=rate,
                )
                busy = busy_run.summary()
            async with raw_caller(target.url, target.token, method, target, connections=1) as c:
                await load.warm(c, 10)
                alone = (await load.run(c, concurrency=1, max_calls=400, max_seconds=4)).summary()
            mine = figures[target.name]
            mine.setdefault("cpu", []).append(busy["cpu_ms_per_call"]["gateway"])
            # On a loaded machine the calls/s, and with it the idle CPU's share of a
            # call, swing from round to round: the CPU per call less the idle rate is
            # the steadier figure of the work a call costs.
            net_s = busy_run.cpu_s["gateway"] - idle_per_s * busy_run.elapsed_s
            mine.setdefault("net", []).append(net_s * 1000 / max(1, busy_run.completed))
            mine.setdefault("idle", []).append(idle_per_s * 1000)
            mine.setdefault("calls_s", []).append(busy["ok_per_s"])
            mine.setdefault("direct_calls_s", []).append(baseline["ok_per_s"])
            mine.setdefault("share", []).append(busy["ok_per_s"] / baseline["ok_per_s"])
            # A machine so loaded that no call of the c=1 run succeeded has no p50.
            mine.setdefault("p50", []).append(alone.get("ok_p50_ms", float("nan")))
            mine.setdefault("direct_p50", []).append(direct_alone.get("ok_p50_ms", float("nan")))
            mine.setdefault("p50_x", []).append(mine["p50"][-1] / mine["direct_p50"][-1])
            mine.setdefault("load", []).append(load_1m)
            print(
                f"round {index} {target.name}: CPU per call {mine['cpu'][-1]:.3f} ms "
                f"(less idle {mine['net'][-1]:.3f}; idle {mine['idle'][-1]:.1f} ms/s), "
                f"c=16 {busy['ok_per_s']} calls/s ({mine['share'][-1]:.3f}× direct), "
                f"p50 c=1 {mine['p50'][-1]:.2f} ms ({mine['p50_x'][-1]:.2f}× direct), "
                f"load {load_1m:.2f}, answers {busy['kinds']}",
                flush=True,
            )
    for name, mine in figures.items():
        print(
            f"{name}: CPU per call {_spread(mine['cpu'])} ms (less idle "
            f"{_spread(mine['net'])}; idle {_spread(mine['idle'])} ms/s), calls/s c=16 "
            f"{_spread(mine['share'])}× direct, p50 c=1 {_spread(mine['p50'])} ms "
            f"({_spread(mine['p50_x'])}× direct)"
        )
    for figure, label in (("cpu", "CPU per call"), ("net", "CPU per call less idle")):
        first = figures[targets[0].name][figure]
        for target in targets[1:]:
            mine = figures[target.name][figure]
            paired = [round(b / a, 3) for a, b in zip(first, mine, strict=True)]
            print(f"{target.name} / {targets[0].name}, {label}, per round: {paired}")
    return figures


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trees", help="comma-separated checkout folders")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--method", default="tools/call", choices=sorted(METHODS))
    parser.add_argument(
        "--seconds",
        type=float,
        default=6,
        help="length of each c=16 run (longer on a loaded machine: more calls per figure)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="calls a second of each c=16 run (paced, at most 16 in flight): every gateway "
        "does the same work per second, so their CPU per call compares on a loaded machine",
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also measure the bare proxy, and the bare proxy committing each body durably "
        "before it forwards: the least a hop, and a hop keeping DESIGN §9, cost here",
    )
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    serve(
        trees,
        METHODS[args.method],
        args.rounds,
        args.seconds,
        args.rate,
        bare_proxy=args.floors,
        durable_proxy=args.floors,
    )


def serve(
    trees: list[Path],
    method: Method,
    rounds: int,
    seconds: float,
    rate: float | None,
    *,
    bare_proxy: bool = False,
    durable_proxy: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """Serves a gateway of each tree on one upstream and measures them (`measure`);
    ``bare_proxy``: bench/bare_proxy.py as one more target, named ``bare_proxy``;
    ``durable_proxy``: the same proxy committing each body durably first
    (``--commit-to``), named ``durable_proxy``."""
    directory = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    upstream = McpUpstreamServer.start(directory)
    policy = write_policy(directory, GRANTS)
    gateways: list[GatewayServer] = []
    targets: list[Target] = []
    proxies = []
    try:
        for index, tree in enumerate(trees):
            gateway = GatewayServer.configure(
                directory / f"gateway-{index}",
                upstreams=[{"name": "up", "url": upstream.url}],
                policy_config={"path": str(policy)},
            )
            gateways.append(start(gateway, tree))
            assert gateway.process is not None
            name = f"{index}:{tree.name}"
            token = gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S)
            middle: dict[str, Any] = {"gateway": gateway.process.popen.pid}
            targets.append(Target(name, gateway.mcp_url, token, gateway_rename, middle))
        token = targets[0].token if targets else "bench"
        for name, wanted, commit_to in (
            ("bare_proxy", bare_proxy, None),
            ("durable_proxy", durable_proxy, directory / "durable-proxy.db"),
        ):
            if wanted:
                proxy, url = start_proxy(directory, upstream.url, commit_to)
                proxies.append(proxy)
                # Counted as "gateway" in `measure`: the middle process of its path.
                pid = {"gateway": proxy.popen.pid}
                targets.append(Target(name, url, token, lambda n: n, pid))
        return anyio.run(
            measure,
            targets,
            upstream,
            method,
            rounds,
            seconds,
            rate,
            backend_options={"use_uvloop": True},
        )
    finally:
        for proxy in proxies:
            proxy.stop()
        for gateway in gateways:
            gateway.stop()
        upstream.process.stop()


if __name__ == "__main__":
    main()
