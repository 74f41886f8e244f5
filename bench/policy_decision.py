"""Policy decision latency: the embedded engine vs an OPA sidecar, and what each costs
end to end.

1. Decisions: `EmbeddedEngine.evaluate` (regopy, inline while fast, as served) and
   `OpaEngine.evaluate` (one POST to OPA on loopback) on the same inputs, built by
   `build_input` from the shipped policy's grants, in interleaved rounds.
2. The HTTP client for the sidecar hot path: the same decision request through
   httpx.AsyncClient, httpx2.AsyncClient, a bare httpcore pool and the engine's own
   keep-alive client; and the cost of ``?provenance`` (bundle revision per decision).
3. End to end: an MCP `tools/call` direct to the upstream, through a gateway on the
   embedded engine, and through a gateway on the OPA sidecar (functions of
   bench.gateway_overhead), interleaved rounds at concurrency 1, then throughput at 16.

OPA runs with decision logging to its console, as the tests run it (decision ids are
only returned with decision logging on). Everything runs on uvloop, as the gateway does.
Target: the sidecar's p50 decision no more than the embedded engine's p50 + 1 ms.

    .venv/bin/python -m bench.policy_decision [--decisions 2000] [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpcore
import httpx
import httpx2

from bench.common import machine, summary_ms, write_result
from bench.gateway_overhead import interleaved, throughput
from gateway.config import OpaPolicyConfig
from gateway.http_client import KeepAliveClient
from gateway.policy import build_input
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.opa import DECISION_PATH, OpaEngine
from gateway.types import ClientInfo, Principal, ToolDefinition
from tests.support.opa import OpaServer
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {
        "role": "agent",
        "tool": "up__read",
        "constraints": [{"kind": "max_length", "argument": "text", "max": 20}],
    },
    {"role": "agent", "tool": "up__delete", "approval": {"approvers": ["role:approver"]}},
]
Sample = Callable[[], Awaitable[Any]]


def inputs() -> list[dict[str, Any]]:
    """Allow, deny by constraint, deny without grant, approval, and a redaction."""

    def one(tool: str, arguments: dict[str, Any], roles: tuple[str, ...] = ("agent",)):
        return build_input(
            principal=Principal(sub="agent:bench", iss="https://issuer.test", roles=roles),
            action="tools/call",
            request_id="req_bench",
            transport="mcp",
            tool=ToolDefinition(
                name=tool,
                server="up",
                upstream_tool=tool.split("__")[1],
                description=None,
                input_schema={"type": "object"},
                output_schema=None,
                annotations={},
                risk="medium",
                definition_hash="0" * 64,
            ),
            arguments=arguments,
            client=ClientInfo(ip="127.0.0.1", user_agent="bench"),
            now=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
        )

    return [
        one("up__echo", {"text": "hello"}),
        one("up__read", {"text": "x" * 40}),
        one("up__echo", {"text": "hello"}, roles=()),
        one("up__delete", {"ids": [1, 2, 3]}),
        one("up__echo", {"text": "hello", "api_key": "s3cret"}),
    ]


async def sample(fn: Sample, count: int) -> list[float]:
    samples = []
    for _ in range(50):  # warm up: connections, caches, worker threads
        await fn()
    for _ in range(count):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return samples


async def interleave(paths: dict[str, Sample], count: int, rounds: int = 5) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            samples[name].extend(await sample(fn, count // rounds))
    return {name: summary_ms(s) for name, s in samples.items()}


def cycling(fn: Callable[[dict[str, Any]], Awaitable[Any]]) -> Sample:
    documents = inputs()
    state = {"i": 0}

    async def run() -> Any:
        state["i"] += 1
        return await fn(documents[state["i"] % len(documents)])

    return run


async def decisions(policy: Path, opa_url: str, count: int) -> dict[str, Any]:
    embedded = EmbeddedEngine(policy)
    opa = OpaEngine(OpaPolicyConfig(engine="opa", url=opa_url, timeout_ms=1000))
    try:
        for document in inputs():  # both engines must agree before they are timed
            a, b = embedded.evaluate_sync(document), await opa.evaluate(document)
            assert (a.allow, a.require_approval, a.rule) == (b.allow, b.require_approval, b.rule)
        return await interleave(
            {"embedded": cycling(embedded.evaluate), "opa": cycling(opa.evaluate)}, count
        )
    finally:
        await opa.close()


async def http_clients(opa_url: str, count: int) -> dict[str, Any]:
    documents = [json.dumps({"input": d}).encode() for d in inputs()]
    target = DECISION_PATH + "?strict-builtin-errors"
    headers = {"Content-Type": "application/json"}
    a = httpx.AsyncClient(base_url=opa_url)
    b = httpx2.AsyncClient(base_url=opa_url)
    pool = httpcore.AsyncConnectionPool()
    own = KeepAliveClient(opa_url)

    def each(post: Callable[[bytes], Awaitable[bytes]]) -> Sample:
        state = {"i": 0}

        async def run() -> Any:
            state["i"] += 1
            return json.loads(await post(documents[state["i"] % len(documents)]))

        return run

    async def via_httpx(body: bytes) -> bytes:
        return (await a.post(target, content=body, headers=headers)).content

    async def via_httpx2(body: bytes) -> bytes:
        return (await b.post(target, content=body, headers=headers)).content

    async def via_httpcore(body: bytes) -> bytes:
        response = await pool.request("POST", opa_url + target, headers=headers, content=body)
        return response.content

    async def via_own(body: bytes) -> bytes:
        return (await own.request("POST", target, body)).body

    async def via_own_provenance(body: bytes) -> bytes:
        return (await own.request("POST", target + "&provenance", body)).body

    try:
        return await interleave(
            {
                "httpx.AsyncClient": each(via_httpx),
                "httpx2.AsyncClient": each(via_httpx2),
                "httpcore.AsyncConnectionPool": each(via_httpcore),
                "KeepAliveClient (chosen)": each(via_own),
                "KeepAliveClient + provenance": each(via_own_provenance),
            },
            count,
        )
    finally:
        await a.aclose()
        await b.aclose()
        await pool.aclose()
        await own.aclose()


async def end_to_end(
    upstream: McpUpstreamServer, embedded: GatewayServer, opa: GatewayServer, args: Any
) -> dict[str, Any]:
    token_e, token_o = embedded.token(sub="agent:bench"), opa.token(sub="agent:bench")
    paths = [
        (upstream.url, token_e, "echo"),
        (embedded.mcp_url, token_e, "up__echo"),
        (opa.mcp_url, token_o, "up__echo"),
    ]
    direct, via_embedded, via_opa = await interleaved(paths, args.calls)
    out: dict[str, Any] = {
        "direct_c1": summary_ms(direct),
        "gateway_embedded_c1": summary_ms(via_embedded),
        "gateway_opa_c1": summary_ms(via_opa),
    }
    for name, path in (("embedded", paths[1]), ("opa", paths[2])):
        rate = await throughput(*path, args.concurrent_calls, 16)
        out[f"gateway_{name}_c16_calls_per_s"] = round(rate, 1)
    return out


def run(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        policy = write_policy(directory, GRANTS)
        sidecar = OpaServer([policy], directory / "opa.log").start()
        upstream = McpUpstreamServer.start(directory)
        gateways = []
        try:
            result: dict[str, Any] = {}
            options = {"backend_options": {"use_uvloop": True}}
            result["decision"] = anyio.run(
                decisions, policy, sidecar.url, args.decisions, **options
            )
            result["http_client"] = anyio.run(http_clients, sidecar.url, args.decisions, **options)
            # One generous timeout for both engines: on a shared 2-core machine, 16
            # concurrent calls can queue a decision past the 200 ms default, and a
            # (correct) fail-closed deny would abort the throughput run.
            timeout = {"timeout_ms": 2000}
            for name, section in (
                ("embedded", {"path": str(policy), **timeout}),
                ("opa", {"engine": "opa", "url": sidecar.url, "path": str(policy), **timeout}),
            ):
                gateway = GatewayServer.configure(
                    directory / f"gateway-{name}",
                    upstreams=[{"name": "up", "url": upstream.url}],
                    policy_config=section,
                )
                gateways.append(gateway.start())
            result["end_to_end"] = anyio.run(end_to_end, upstream, *gateways, args)
            return result
        finally:
            for gateway in gateways:
                gateway.stop()
            upstream.process.stop()
            sidecar.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrent-calls", type=int, default=1000)
    args = parser.parse_args()
    result = run(args)
    d, c, e = result["decision"], result["http_client"], result["end_to_end"]
    added_p50 = round(d["opa"]["p50_ms"] - d["embedded"]["p50_ms"], 3)
    e2e_added_p50 = round(e["gateway_opa_c1"]["p50_ms"] - e["gateway_embedded_c1"]["p50_ms"], 3)
    result["sidecar_minus_embedded_p50_ms"] = added_p50
    result["target_met"] = added_p50 <= 1.0
    result["gateway_opa_minus_embedded_p50_ms"] = e2e_added_p50
    result["ratio_gateway_opa_to_embedded_p50"] = round(
        e["gateway_opa_c1"]["p50_ms"] / e["gateway_embedded_c1"]["p50_ms"], 2
    )
    report = {"benchmark": "policy_decision", "machine": machine(), **result}
    m = report["machine"]
    rows = "\n".join(
        f"| {name} | {s['p50_ms']} ms | {s['p99_ms']} ms | {s['mean_ms']} ms |"
        for name, s in c.items()
    )
    markdown = f"""# Policy decisions: embedded engine vs OPA sidecar

Machine: {m["cpu"]}, {m["cores"]} cores, Python {m["python"]}, commit {m["commit"]},
{m["date"]}. OPA 1.22 on loopback with console decision logging; uvloop; both
gateways with `policy.timeout_ms: 2000` so that queueing at c=16 cannot abort the run.
Command: `.venv/bin/python -m bench.policy_decision --decisions {args.decisions} --calls {args.calls} --concurrent-calls {args.concurrent_calls}`

## Decision latency (the engine's `evaluate`, same inputs, interleaved rounds)

| engine | p50 | p99 | mean |
| --- | --- | --- | --- |
| embedded (regopy, inline) | {d["embedded"]["p50_ms"]} ms | {d["embedded"]["p99_ms"]} ms | {d["embedded"]["mean_ms"]} ms |
| OPA sidecar (HTTP, keep-alive) | {d["opa"]["p50_ms"]} ms | {d["opa"]["p99_ms"]} ms | {d["opa"]["mean_ms"]} ms |
| **sidecar p50 − embedded p50** | **{added_p50:+} ms** | | |

Target: the sidecar adds at most 1 ms to the embedded p50 — **{"met" if result["target_met"] else "not met"}**.

## HTTP client for the sidecar (POST decision + JSON parse)

| client | p50 | p99 | mean |
| --- | --- | --- | --- |
{rows}

## End to end (MCP `tools/call`, c=1 interleaved; throughput c=16)

| path | p50 | p99 | throughput (c=16) |
| --- | --- | --- | --- |
| direct | {e["direct_c1"]["p50_ms"]} ms | {e["direct_c1"]["p99_ms"]} ms | |
| gateway, embedded | {e["gateway_embedded_c1"]["p50_ms"]} ms | {e["gateway_embedded_c1"]["p99_ms"]} ms | {e["gateway_embedded_c16_calls_per_s"]} calls/s |
| gateway, OPA sidecar | {e["gateway_opa_c1"]["p50_ms"]} ms | {e["gateway_opa_c1"]["p99_ms"]} ms | {e["gateway_opa_c16_calls_per_s"]} calls/s |
| **OPA − embedded (p50)** | **{e2e_added_p50:+} ms** ({result["ratio_gateway_opa_to_embedded_p50"]}×) | | |
"""
    path = write_result("policy_decision", report, markdown)
    print(markdown)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
