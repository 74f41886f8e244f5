"""Direct upstream MCP call vs the same call through the gateway.

Every path uses the MCP SDK client over loopback Streamable HTTP against the same
upstream process (the recording test server's `echo`). The gateway path adds JWT
verification, the embedded Rego decision, the durable audit appends (attempt +
decision before forwarding, outcome after; SQLite with synchronous=FULL) and the
forward. A third path goes through `bench.bare_proxy`, a forwarding proxy on the
gateway's HTTP stack that does nothing else: what the extra hop alone costs. Reported:
p50/p99 at concurrency 1, throughput at concurrency 16, and the ratios to the direct
call measured in the same run.

A second gateway serves the same upstream plus a 1,000-tool HTTP upstream: a REST
tools/list takes one policy decision for the whole catalog (gateway.policy.listing),
timed uncached (a new subject each time) and cached; and a tools/call is timed alone
and while another client lists (uncached) in a loop, which used to stall it.

    .venv/bin/python -m bench.gateway_overhead [--calls 500] [--concurrent-calls 2000]
        [--lists 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench import proc_cpu
from bench.common import machine, summary_ms, write_result
from tests.e2e.mcp_client import connect
from tests.support.processes import (
    GatewayServer,
    McpUpstreamServer,
    Process,
    free_port,
    spawn,
    wait_for_port,
    write_policy,
)

ERA = "2026-07-28"
WARM_UP = 20


async def latencies(url: str, token: str, tool: str, calls: int) -> list[float]:
    samples = []
    async with connect(url, token, ERA) as client:
        for _ in range(WARM_UP):  # warm up: connections, caches, first-call tool listing
            await client.call_tool(tool, {"text": "warm"})
        for i in range(calls):
            started = time.perf_counter()
            result = await client.call_tool(tool, {"text": f"call {i}"})
            samples.append(time.perf_counter() - started)
            assert not result.is_error, result
    return samples


async def interleaved(paths: list[tuple[str, str, str]], calls: int, rounds: int = 5):
    """Latency samples per path, measured in alternating rounds so that drift in the
    machine's load hits every path alike."""
    samples: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for index, path in enumerate(paths):
            samples[index].extend(await latencies(*path, calls // rounds))
    return samples


async def throughput(url: str, token: str, tool: str, calls: int, concurrency: int) -> float:
    async with connect(url, token, ERA) as client:
        await client.call_tool(tool, {"text": "warm"})
        remaining = iter(range(calls))

        async def worker() -> None:
            for i in remaining:
                result = await client.call_tool(tool, {"text": f"call {i}"})
                assert not result.is_error, result

        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for _ in range(concurrency):
                tasks.start_soon(worker)
        return calls / (time.perf_counter() - started)


def start_proxy(directory: Path, upstream_url: str) -> tuple[Process, str]:
    port = free_port()
    process = spawn(
        [sys.executable, "-m", "bench.bare_proxy", "--port", str(port), "--upstream", upstream_url],
        directory / "bare-proxy.log",
    )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}/mcp"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    upstream: McpUpstreamServer, proxy_url: str, gateway: GatewayServer, args: Any
) -> dict[str, Any]:
    token = gateway.token(sub="agent:bench")
    paths = {
        "direct": (upstream.url, token, "echo"),
        "proxy": (proxy_url, token, "echo"),
        "gateway": (gateway.mcp_url, token, "up__echo"),
    }
    out: dict[str, Any] = {}
    assert gateway.process is not None
    pid = gateway.process.popen.pid
    # The gateway process's CPU per call, over the calls of the gateway path at c=1.
    cpu_before = cpu_seconds(pid)
    await latencies(*paths["gateway"], args.calls)
    calls = args.calls + WARM_UP  # latencies() warms up first; those calls count too
    out["gateway_cpu_ms_per_call"] = round((cpu_seconds(pid) - cpu_before) * 1000 / calls, 3)
    samples = await interleaved(list(paths.values()), args.calls)
    for name, path_samples in zip(paths, samples, strict=True):
        out[f"{name}_c1"] = summary_ms(path_samples)
    for name, path in paths.items():
        rate = await throughput(*path, args.concurrent_calls, 16)
        out[f"{name}_c16_calls_per_s"] = round(rate, 1)
    for name in ("proxy", "gateway"):
        prefix = "ratio" if name == "gateway" else f"{name}_ratio"
        out[f"{prefix}_p50"] = round(out[f"{name}_c1"]["p50_ms"] / out["direct_c1"]["p50_ms"], 2)
        out[f"{prefix}_p99"] = round(out[f"{name}_c1"]["p99_ms"] / out["direct_c1"]["p99_ms"], 2)
        out[f"{prefix}_throughput"] = round(
            out[f"{name}_c16_calls_per_s"] / out["direct_c16_calls_per_s"], 2
        )
    return out


LIST_TOOLS = 1000


def list_gateway(directory: Path, upstream: McpUpstreamServer) -> GatewayServer:
    grants = [
        {"role": "agent", "tool": "up__echo"},
        {"role": "reader", "tool": "many__*", "max_risk": "low"},
    ]
    many = {
        "name": "many",
        "kind": "http",
        "base_url": "http://127.0.0.1:9",  # listed, never called
        "risk": {
            "default": "low",
            "tools": {f"t{i:04d}": "high" for i in range(0, LIST_TOOLS, 10)},
        },
        "tools": [{"name": f"t{i:04d}", "path": f"/t/{i}"} for i in range(LIST_TOOLS)],
    }
    return GatewayServer.configure(
        directory / "gateway-lists",
        upstreams=[{"name": "up", "url": upstream.url}, many],
        policy=write_policy(directory / "lists", grants),
    ).start()


async def measure_lists(gateway: GatewayServer, args: Any) -> dict[str, Any]:
    url = f"{gateway.url}/v1/tools"
    tokens = [gateway.token(sub=f"agent:lister-{i}", roles=("reader",)) for i in range(4000)]
    state = {"next": 0}

    async def one_list(client: httpx.AsyncClient, token: str) -> float:
        started = time.perf_counter()
        response = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and len(response.json()["tools"]) == 900, response.text
        return elapsed

    def fresh() -> str:
        state["next"] += 1
        return tokens[state["next"] % len(tokens)]

    assert gateway.process is not None
    pid = gateway.process.popen.pid

    async def timed_lists(token: Any) -> dict[str, Any]:
        """Latency of ``args.lists`` lists, and the gateway's CPU per list: robust to
        a shared machine's load, unlike the latency."""
        before = proc_cpu.cpu_seconds([pid])[pid]
        summary = summary_ms([await one_list(client, token()) for _ in range(args.lists)])
        spent = proc_cpu.cpu_seconds([pid])[pid] - before
        return {**summary, "gateway_cpu_ms_per_list": round(spent * 1000 / args.lists, 2)}

    out: dict[str, Any] = {"load_average": proc_cpu.load_average()}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(10):
            await one_list(client, fresh())
        out["list_uncached"] = await timed_lists(fresh)
        out["list_cached"] = await timed_lists(lambda: tokens[0])

        token = gateway.token(sub="agent:caller")
        out["call_alone_c1"] = summary_ms(
            await latencies(gateway.mcp_url, token, "up__echo", args.calls)
        )
        # The lister is a process of its own: sharing this one's event loop would time
        # its JSON parsing, not the gateway.
        with tempfile.TemporaryDirectory() as scratch:
            request = Path(scratch) / "request.json"
            stop = Path(scratch) / "stop"
            request.write_text(
                json.dumps({"url": url, "tokens": tokens[1000:], "stop": str(stop), "expect": 900})
            )
            lister = subprocess.Popen(  # noqa: ASYNC220 - starts at once; it runs on its own
                [sys.executable, "-m", "bench.list_loop", str(request)], stdout=subprocess.PIPE
            )
            try:
                await anyio.sleep(1)  # let it start listing
                during = await latencies(gateway.mcp_url, token, "up__echo", args.calls)
            finally:
                stop.touch()
                listed, _ = lister.communicate(timeout=60)
        out["call_while_listing_c1"] = summary_ms(during)
        out["lists_during_calls"] = int(listed.decode().strip() or 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrent-calls", type=int, default=2000)
    parser.add_argument("--lists", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        upstream = McpUpstreamServer.start(directory)
        proxy, proxy_url = start_proxy(directory, upstream.url)
        gateway = GatewayServer.configure(
            directory / "gateway",
            upstreams=[{"name": "up", "url": upstream.url}],
            policy=write_policy(directory, [{"role": "agent", "tool": "up__echo"}]),
        ).start()
        try:
            result = anyio.run(measure, upstream, proxy_url, gateway, args)
        finally:
            gateway.stop()
            proxy.stop()
        try:
            lister = list_gateway(directory, upstream)
            try:
                result["lists"] = anyio.run(measure_lists, lister, args)
            finally:
                lister.stop()
        finally:
            upstream.process.stop()
    report = {"benchmark": "gateway_overhead", "machine": machine(), "era": ERA, **result}
    d, p, g = result["direct_c1"], result["proxy_c1"], result["gateway_c1"]
    lists = result["lists"]
    markdown = f"""# Gateway overhead: direct MCP call vs through the gateway

Machine: {report["machine"]["cpu"]}, {report["machine"]["cores"]} cores, Python
{report["machine"]["python"]}, commit {report["machine"]["commit"]}, {report["machine"]["date"]}.
MCP {ERA} over loopback Streamable HTTP; embedded Rego; durable audit (SQLite, FULL sync).
Command: `.venv/bin/python -m bench.gateway_overhead --calls {args.calls} --concurrent-calls {args.concurrent_calls} --lists {args.lists}`

| path | p50 (c=1) | p99 (c=1) | throughput (c=16) |
| --- | --- | --- | --- |
| direct | {d["p50_ms"]} ms | {d["p99_ms"]} ms | {result["direct_c16_calls_per_s"]} calls/s |
| bare proxy (the extra hop alone) | {p["p50_ms"]} ms | {p["p99_ms"]} ms | {result["proxy_c16_calls_per_s"]} calls/s |
| gateway | {g["p50_ms"]} ms | {g["p99_ms"]} ms | {result["gateway_c16_calls_per_s"]} calls/s |
| ratio bare proxy/direct | {result["proxy_ratio_p50"]}× | {result["proxy_ratio_p99"]}× | {result["proxy_ratio_throughput"]}× |
| **ratio gateway/direct** | **{result["ratio_p50"]}×** | {result["ratio_p99"]}× | {result["ratio_throughput"]}× |

Gateway process CPU per `tools/call` (c=1, {args.calls} calls and their warm-up,
before the interleaved rounds): **{result["gateway_cpu_ms_per_call"]} ms**.

Target: gateway p50 within 2× the direct p50.

## tools/list over 1,000 tools (900 visible), REST, one policy decision

| what | p50 | p99 | mean |
| --- | --- | --- | --- |
| list, uncached (a new subject each time) | {lists["list_uncached"]["p50_ms"]} ms | {lists["list_uncached"]["p99_ms"]} ms | {lists["list_uncached"]["mean_ms"]} ms |
| list, cached (the same subject) | {lists["list_cached"]["p50_ms"]} ms | {lists["list_cached"]["p99_ms"]} ms | {lists["list_cached"]["mean_ms"]} ms |
| MCP tools/call alone (c=1) | {lists["call_alone_c1"]["p50_ms"]} ms | {lists["call_alone_c1"]["p99_ms"]} ms | {lists["call_alone_c1"]["mean_ms"]} ms |
| MCP tools/call while another client lists in a loop | {lists["call_while_listing_c1"]["p50_ms"]} ms | {lists["call_while_listing_c1"]["p99_ms"]} ms | {lists["call_while_listing_c1"]["mean_ms"]} ms |

The gateway's CPU per list (robust to the machine's load, unlike latency): uncached
**{lists["list_uncached"]["gateway_cpu_ms_per_list"]} ms**, cached
**{lists["list_cached"]["gateway_cpu_ms_per_list"]} ms** (load average
{lists["load_average"][0]} when the lists began).

{lists["lists_during_calls"]} uncached lists ran during the {args.calls} calls. Target: a
list of 1,000 tools ≤ 20 ms (uncached: **{"met" if lists["list_uncached"]["p50_ms"] <= 20 else "not met"}**).
The lister is a process of its own (bench/list_loop.py); it, the timed client, the
upstream and the gateway share the machine's two cores.
"""
    path = write_result("gateway_overhead", report, markdown)
    print(markdown)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
