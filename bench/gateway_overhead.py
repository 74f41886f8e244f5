"""Direct upstream MCP call vs the same call through the gateway.

Every path uses the MCP SDK client over loopback Streamable HTTP against the same
upstream process (the recording test server's `echo`). The gateway path adds JWT
verification, the embedded Rego decision, the durable audit appends (attempt +
decision before forwarding, outcome after; SQLite with synchronous=FULL) and the
forward. A third path goes through `bench.bare_proxy`, a forwarding proxy on the
gateway's HTTP stack that does nothing else: what the extra hop alone costs. Reported:
p50/p99 at concurrency 1, throughput at concurrency 16, and the ratios to the direct
call measured in the same run.

    .venv/bin/python -m bench.gateway_overhead [--calls 500] [--concurrent-calls 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

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


async def latencies(url: str, token: str, tool: str, calls: int) -> list[float]:
    samples = []
    async with connect(url, token, ERA) as client:
        for _ in range(20):  # warm up: connections, caches, first-call tool listing
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrent-calls", type=int, default=2000)
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
            upstream.process.stop()
    report = {"benchmark": "gateway_overhead", "machine": machine(), "era": ERA, **result}
    d, p, g = result["direct_c1"], result["proxy_c1"], result["gateway_c1"]
    markdown = f"""# Gateway overhead: direct MCP call vs through the gateway

Machine: {report["machine"]["cpu"]}, {report["machine"]["cores"]} cores, Python
{report["machine"]["python"]}, commit {report["machine"]["commit"]}, {report["machine"]["date"]}.
MCP {ERA} over loopback Streamable HTTP; embedded Rego; durable audit (SQLite, FULL sync).
Command: `.venv/bin/python -m bench.gateway_overhead --calls {args.calls} --concurrent-calls {args.concurrent_calls}`

| path | p50 (c=1) | p99 (c=1) | throughput (c=16) |
| --- | --- | --- | --- |
| direct | {d["p50_ms"]} ms | {d["p99_ms"]} ms | {result["direct_c16_calls_per_s"]} calls/s |
| bare proxy (the extra hop alone) | {p["p50_ms"]} ms | {p["p99_ms"]} ms | {result["proxy_c16_calls_per_s"]} calls/s |
| gateway | {g["p50_ms"]} ms | {g["p99_ms"]} ms | {result["gateway_c16_calls_per_s"]} calls/s |
| ratio bare proxy/direct | {result["proxy_ratio_p50"]}× | {result["proxy_ratio_p99"]}× | {result["proxy_ratio_throughput"]}× |
| **ratio gateway/direct** | **{result["ratio_p50"]}×** | {result["ratio_p99"]}× | {result["ratio_throughput"]}× |

Target: gateway p50 within 2× the direct p50.
"""
    path = write_result("gateway_overhead", report, markdown)
    print(markdown)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
