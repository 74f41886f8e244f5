"""``tools/list`` of a large catalog through gateways of several checkouts, in rotated
rounds: the before/after of a change to the list path, measured in CPU.

One upstream of ``--tools`` tools (bench/catalog_upstream.py); one gateway per tree
(a checkout with its own `.venv`), each serving `gateway serve` with the test
configuration (embedded engine, SQLite audit). Each round, for every tree in an order
rotated from round to round, one client at a time (c=1) lists:

- ``mcp``: MCP ``tools/list`` on `/mcp` (2026-07-28, sessionless), one subject: after
  the first list its decision is cached;
- ``rest``: ``GET /v1/tools``, the same subject (cached);
- ``rest_uncached``: ``GET /v1/tools`` with a new subject each time (a token per
  list, minted beforehand): every list asks the policy ``data.gateway.visible``.

Reported per path: the gateway process's CPU per list (``bench.proc_cpu``: what a
busy machine distorts least) and the p50, and per round the ratio of every tree's CPU
per list to the first tree's. ``--profile SECONDS`` instead lists on the first tree
for that long (``--path``, `/mcp` by default) and prints the gateway's pid first, for
``py-spy record``.

    .venv/bin/python -m bench.list_ab TREE_A,TREE_B [--tools 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from bench import load
from bench.ab_gateways import start
from bench.clients import CLIENT_META, ERA, classify
from bench.proc_cpu import load_average
from bench.targets import GRANTS, TOKEN_TTL_S
from gateway.http_client import KeepAliveClient
from tests.support.processes import GatewayServer, free_port, spawn, wait_for_port, write_policy

PATHS = ("mcp", "rest", "rest_uncached")
Lister = Callable[[], Awaitable[str]]


def mcp_lister(http: KeepAliveClient, token: str) -> Lister:
    ids = itertools.count(1)
    headers = {
        "Authorization": f"Bearer {token}",
        "MCP-Protocol-Version": ERA,
        "Mcp-Method": "tools/list",
    }

    async def call() -> str:
        body = {"jsonrpc": "2.0", "method": "tools/list", "params": {"_meta": CLIENT_META}}
        encoded = json.dumps({**body, "id": next(ids)}).encode()
        response = await http.request(
            "POST", "/mcp", encoded, headers=headers, accept="application/json, text/event-stream"
        )
        return classify(response.status, response.content_type, response.body)

    return call


def rest_lister(http: KeepAliveClient, tokens: list[str]) -> Lister:
    turn = itertools.cycle(tokens)

    async def call() -> str:
        response = await http.request(
            "GET", "/v1/tools", headers={"Authorization": f"Bearer {next(turn)}"}
        )
        return "ok" if response.status == 200 else f"http:{response.status}"

    return call


async def one(lister: Lister, pid: int, lists: int, seconds: float) -> dict[str, Any]:
    await load.warm(lister, 3)
    run = await load.run(
        lister, concurrency=1, max_calls=lists, max_seconds=seconds, measure={"gw": pid}
    )
    summary = run.summary()
    return {
        "cpu": summary["cpu_ms_per_call"]["gw"],
        "p50": summary["ok_p50_ms"],
        "kinds": summary["kinds"],
    }


async def measure(gateways: list[tuple[str, GatewayServer, int]], args: Any) -> dict[str, Any]:
    await load.wait_quiet([pid for _, _, pid in gateways])
    figures: dict[str, dict[str, dict[str, list[float]]]] = {
        name: {path: {"cpu": [], "p50": []} for path in PATHS} for name, _, _ in gateways
    }
    fresh = itertools.count()
    loads = []
    for index in range(args.rounds):
        loads.append(load_average())
        shift = index % len(gateways)
        for name, gateway, pid in gateways[shift:] + gateways[:shift]:
            http = KeepAliveClient(gateway.url, max_connections=1, max_response_bytes=1 << 26)
            token = gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S)
            subjects = [
                gateway.token(sub=f"agent:bench-{next(fresh)}", ttl_s=TOKEN_TTL_S)
                for _ in range(args.lists + 3)
            ]
            listers = {
                "mcp": mcp_lister(http, token),
                "rest": rest_lister(http, [token]),
                "rest_uncached": rest_lister(http, subjects),
            }
            try:
                for path, lister in listers.items():
                    got = await one(lister, pid, args.lists, args.seconds)
                    figures[name][path]["cpu"].append(got["cpu"])
                    figures[name][path]["p50"].append(got["p50"])
                    print(
                        f"round {index} {name} {path}: CPU per list {got['cpu']:.2f} ms, "
                        f"p50 {got['p50']:.2f} ms, {got['kinds']}",
                        flush=True,
                    )
            finally:
                await http.aclose()
    return {"figures": figures, "load_average": loads}


def report(result: dict[str, Any], names: list[str]) -> str:
    figures = result["figures"]
    lines = ["| path | tree | CPU per list, ms | p50, ms (loaded) |", "| --- | --- | --- | --- |"]
    for path in PATHS:
        for name in names:
            mine = figures[name][path]
            lines.append(f"| {path} | {name} | {_spread(mine['cpu'])} | {_spread(mine['p50'])} |")
    lines.append("")
    for path in PATHS:
        first = figures[names[0]][path]["cpu"]
        for name in names[1:]:
            paired = [
                round(b / a, 3) for a, b in zip(first, figures[name][path]["cpu"], strict=True)
            ]
            lines.append(f"- {path}, {name} / {names[0]}, CPU per list per round: {paired}")
    lines.append(f"- load average (1 min) at each round's start: {result['load_average']}")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


async def profile(gateway: GatewayServer, pid: int, seconds: float, path: str) -> None:
    http = KeepAliveClient(gateway.url, max_connections=1, max_response_bytes=1 << 26)
    token = gateway.token(sub="agent:bench", ttl_s=TOKEN_TTL_S)
    if path == "mcp":
        lister = mcp_lister(http, token)
    elif path == "rest":
        lister = rest_lister(http, [token])
    else:  # a new subject each time, as many as a long run needs
        subjects = [gateway.token(sub=f"agent:p-{i}", ttl_s=TOKEN_TTL_S) for i in range(2000)]
        lister = rest_lister(http, subjects)
    await load.warm(lister, 3)
    print(f"profile: gateway pid {pid}, listing for {seconds} s", flush=True)
    run = await load.run(
        lister, concurrency=1, max_calls=10**9, max_seconds=seconds, measure={"gw": pid}
    )
    await http.aclose()
    print(json.dumps(run.summary()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trees", help="comma-separated checkout folders")
    parser.add_argument("--tools", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lists", type=int, default=40, help="per path, tree and round")
    parser.add_argument("--seconds", type=float, default=8, help="per path, tree and round")
    parser.add_argument("--profile", type=float, default=0, help="seconds: list for py-spy")
    parser.add_argument("--path", default="mcp", choices=PATHS, help="what --profile lists")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    directory = Path(tempfile.mkdtemp(prefix="bench-list-ab-"))
    port = free_port()
    upstream = spawn(
        [sys.executable, "-m", "bench.catalog_upstream", str(port), str(args.tools)],
        directory / "upstream.log",
    )
    policy = write_policy(directory, GRANTS)
    started: list[GatewayServer] = []
    try:
        wait_for_port(port, upstream)
        gateways = []
        for index, tree in enumerate(trees):
            gateway = GatewayServer.configure(
                directory / f"gateway-{index}",
                upstreams=[{"name": "up", "url": f"http://127.0.0.1:{port}/mcp"}],
                policy=policy,
            )
            started.append(start(gateway, tree))
            assert gateway.process is not None
            gateways.append((f"{index}:{tree.name}", gateway, gateway.process.popen.pid))
        began = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
        if args.profile:
            _, gateway, pid = gateways[0]
            options = {"use_uvloop": True}
            anyio.run(profile, gateway, pid, args.profile, args.path, backend_options=options)
            return
        result = anyio.run(measure, gateways, args, backend_options={"use_uvloop": True})
        print(f"\n{began}, {args.tools} tools, {args.rounds} rounds, c=1\n")
        print(report(result, [name for name, _, _ in gateways]))
    finally:
        for gateway in started:
            gateway.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
