"""`gateway serve` with 1 and with 2 server processes, on one upstream, in rotated rounds.

Both gateways run the test configuration (bench/targets.py: embedded engine, durable
SQLite audit, each its own database) in front of one shared upstream; they differ in
``server.processes`` only. Each round measures, for each gateway in an order rotated
from round to round: the direct call at c=16 (the round's baseline), the gateway at
c=16 (calls/s, and CPU per call summed over the supervisor and its processes,
bench/proc_cpu.py) and at c=1 (p50). The raw JSON-RPC client of bench/clients.py.

On a 2-core machine the client, the upstream and the gateway share the cores, so the
2-process figure is reported, not targeted (issue 15): what it can show here is the
price of a second process (CPU per call) and whether calls/s move at all.

    .venv/bin/python -m bench.processes [--rounds 3] [--processes 1,2]

Writes results/serve-<date>-processes.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench import load
from bench.clients import raw_caller
from bench.common import machine, write_result
from bench.methods import METHODS, Method
from bench.proc_cpu import cpu_seconds
from bench.targets import GRANTS, TOKEN_TTL_S, Target, gateway_rename
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy
from tests.support.waiting import eventually

CONNECTIONS = 16
IDLE_S = 10.0


def start(gateway: GatewayServer, processes: int) -> GatewayServer:
    gateway.config["server"]["processes"] = processes
    gateway.start()
    if processes > 1:
        eventually(
            lambda: f"({processes} processes)" in gateway.log(),
            "every server process ready",
            timeout_s=600,
            detail=gateway.log,
        )
    return gateway


def spread_of_connections(gateway: GatewayServer, connections: int) -> list[int]:
    """How ``connections`` new keep-alive connections fall on the processes: the number
    each process accepted, largest first (its `/readyz` names the process)."""
    clients = [httpx.Client(base_url=gateway.url, timeout=30) for _ in range(connections)]
    try:
        pids = [int(c.get("/readyz").json()["process"]["pid"]) for c in clients]
    finally:
        for client in clients:
            client.close()
    return sorted((pids.count(p) for p in set(pids)), reverse=True)


async def idle_cpu_ms_per_s(pids: dict[str, int], seconds: float = IDLE_S) -> dict[str, float]:
    """CPU each gateway tree uses with no call at all (its pollers: executor loops,
    checkpointer, pin sync, approvals sweeper), ms per second, over ``seconds``."""
    before = cpu_seconds(list(pids.values()))
    await anyio.sleep(seconds)
    after = cpu_seconds(list(pids.values()))
    return {
        name: round((after[pid] - before[pid]) * 1000 / seconds, 2) for name, pid in pids.items()
    }


async def measure(
    targets: list[Target], upstream: McpUpstreamServer, method: Method, rounds: int
) -> dict[str, dict[str, list[float]]]:
    pids = [upstream.process.popen.pid] + [t.middle["gateway"] for t in targets]
    await load.wait_quiet(pids)
    figures: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
    idle = await idle_cpu_ms_per_s({t.name: t.middle["gateway"] for t in targets})
    for name, value in idle.items():
        figures[name]["idle_cpu_ms_per_s"] = [value]
    print(f"idle CPU, ms per second: {idle}", flush=True)
    direct = Target("direct", upstream.url, targets[0].token, lambda n: n)
    for index in range(rounds):
        shift = index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            async with raw_caller(direct.url, direct.token, method, direct, connections=16) as c:
                await load.warm(c, 10)
                baseline = (
                    await load.run(c, concurrency=16, max_calls=1500, max_seconds=3)
                ).summary()
            async with raw_caller(
                target.url, target.token, method, target, connections=CONNECTIONS
            ) as c:
                await load.warm(c, 40)
                busy = (
                    await load.run(
                        c,
                        concurrency=16,
                        max_calls=3000,
                        max_seconds=8,
                        measure={"gateway": target.middle["gateway"]},
                    )
                ).summary()
            async with raw_caller(target.url, target.token, method, target, connections=1) as c:
                await load.warm(c, 10)
                alone = (await load.run(c, concurrency=1, max_calls=400, max_seconds=4)).summary()
            mine = figures[target.name]
            mine.setdefault("cpu_ms", []).append(busy["cpu_ms_per_call"]["gateway"])
            mine.setdefault("calls_per_s", []).append(busy["ok_per_s"])
            mine.setdefault("direct_calls_per_s", []).append(baseline["ok_per_s"])
            mine.setdefault("share", []).append(busy["ok_per_s"] / baseline["ok_per_s"])
            mine.setdefault("p50_ms", []).append(alone["ok_p50_ms"])
            mine.setdefault("load_1m", []).append(os.getloadavg()[0])
            print(
                f"round {index} {target.name}: CPU per call {mine['cpu_ms'][-1]:.3f} ms, "
                f"c=16 {busy['ok_per_s']} calls/s ({mine['share'][-1]:.3f}× direct), "
                f"p50 c=1 {alone['ok_p50_ms']:.2f} ms, answers {busy['kinds']}, "
                f"load {mine['load_1m'][-1]:.1f}",
                flush=True,
            )
    return figures


def _spread(values: list[float], digits: int = 3) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def _less_idle(mine: dict[str, list[float]]) -> list[float]:
    """CPU per call without the share of the gateway's idle pollers: at the low rates
    of a loaded machine they are a large part of it, and N processes poll N times."""
    idle = mine["idle_cpu_ms_per_s"][0]
    return [
        cpu - idle / rate for cpu, rate in zip(mine["cpu_ms"], mine["calls_per_s"], strict=True)
    ]


def report(
    figures: dict[str, dict[str, list[float]]], spreads: dict[str, list[int]], rounds: int
) -> str:
    names = list(figures)
    first = figures[names[0]]
    lines = [
        "# `gateway serve` with 1 and 2 server processes",
        "",
        f"{rounds} rotated rounds, raw JSON-RPC client, `tools/call` of the test upstream's "
        "echo, embedded engine, durable SQLite audit. Median (min–max) over the rounds; "
        "CPU per call summed over the supervisor and every server process; less idle: "
        "without the CPU the gateway spends with no call (its pollers), measured before "
        "the rounds. "
        "**2 cores shared by client, upstream and gateway: the 2-process gain is reported, "
        "not targeted.**",
        "",
        "| processes | calls/s c=16 | × direct | CPU per call c=16 | p50 c=1 | "
        "CPU per call less idle | "
        f"{CONNECTIONS} connections per process | idle CPU | load avg (1 min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, mine in figures.items():
        lines.append(
            f"| {name} | {_spread(mine['calls_per_s'], 0)} | {_spread(mine['share'])} | "
            f"{_spread(mine['cpu_ms'])} ms | {_spread(mine['p50_ms'], 2)} ms | "
            f"{_spread(_less_idle(mine))} ms | "
            f"{' + '.join(map(str, spreads[name]))} | "
            f"{mine['idle_cpu_ms_per_s'][0]} ms/s | {_spread(mine['load_1m'], 1)} |"
        )
    lines.append("")
    for name in names[1:]:
        mine = figures[name]
        cpu = [round(b / a, 3) for a, b in zip(first["cpu_ms"], mine["cpu_ms"], strict=True)]
        rate = [
            round(b / a, 3) for a, b in zip(first["calls_per_s"], mine["calls_per_s"], strict=True)
        ]
        lines.append(f"- {name} / {names[0]} per round: CPU per call {cpu}, calls/s at c=16 {rate}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", default="1,2", help="comma-separated counts")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    directory = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    upstream = McpUpstreamServer.start(directory)
    policy = write_policy(directory, GRANTS)
    gateways: list[GatewayServer] = []
    targets: list[Target] = []
    spreads: dict[str, list[int]] = {}
    try:
        for count in counts:
            gateway = GatewayServer.configure(
                directory / f"gateway-{count}",
                upstreams=[{"name": "up", "url": upstream.url}],
                policy_config={"path": str(policy)},
            )
            gateways.append(start(gateway, count))
            assert gateway.process is not None
            name = f"{count} process" + ("es" if count > 1 else "")
            spreads[name] = spread_of_connections(gateway, CONNECTIONS)
            token = gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S)
            middle: dict[str, Any] = {"gateway": gateway.process.popen.pid}
            targets.append(Target(name, gateway.mcp_url, token, gateway_rename, middle))
        figures = anyio.run(
            measure,
            targets,
            upstream,
            METHODS["tools/call"],
            args.rounds,
            backend_options={"use_uvloop": True},
        )
    finally:
        for gateway in gateways:
            gateway.stop()
        upstream.process.stop()
    markdown = report(figures, spreads, args.rounds)
    print(markdown)
    path = write_result(
        "serve",
        {"machine": machine(), "figures": figures, "connections": spreads},
        markdown,
        suffix="processes",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
