"""Policy decision latency: the embedded engine vs an OPA sidecar, and what each costs
end to end.

1. Decisions: `EmbeddedEngine.evaluate` (OPA-compiled Wasm, inline, as served) and
   `OpaEngine.evaluate` (one POST to OPA on loopback) on the same inputs, built by
   `build_input` from the shipped policy's grants, in interleaved rounds; with
   ``--old-engine-tree``, the former regopy engine too (bench.old_engine), its rounds
   interleaved with the others.
1b. Lists: `data.gateway.visible` over a 1,000-tool catalog on both engines
   (gateway.policy.listing), uncached (a new subject each time) and cached; and, for
   comparison, the former way: one decision per tool.
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
        [--old-engine-tree /path/to/checkout-with-regopy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
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
from gateway.policy.listing import VisibleTools
from gateway.policy.opa import DECISION_PATH, OpaEngine
from gateway.types import ClientInfo, Principal, ToolDefinition
from tests.support.deciding import decider_for
from tests.support.opa import OpaServer
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    # The list bench's readers: every tool of ten servers up to low risk.
    *({"role": "reader", "tool": f"s{k}__*", "max_risk": "low"} for k in range(10)),
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


def old_engine_samples(tree: Path, policy: Path, count: int) -> list[float]:
    """``count`` decisions of the former regopy engine, timed in its own checkout, on
    that checkout's policy modules (written for rego-cpp) with this run's data."""
    old_policy = policy.parent / "old-policy"
    if not old_policy.exists():
        shutil.copytree(
            tree / "policies" / "gateway",
            old_policy / "gateway",
            ignore=shutil.ignore_patterns("*_test.rego"),
        )
        shutil.copyfile(policy / "data.json", old_policy / "data.json")
    request = json.dumps({"policy": str(old_policy), "inputs": inputs(), "count": count})
    done = subprocess.run(
        [str(tree / ".venv" / "bin" / "python"), str(Path(__file__).with_name("old_engine.py"))],
        input=request,
        capture_output=True,
        text=True,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=600,
    )
    return [float(x) for x in json.loads(done.stdout)]


async def decisions(
    policy: Path, opa_url: str, count: int, old_tree: Path | None, rounds: int = 5
) -> dict[str, Any]:
    embedded = EmbeddedEngine(policy)
    opa = OpaEngine(OpaPolicyConfig(engine="opa", url=opa_url, timeout_ms=1000))
    try:
        for document in inputs():  # both engines must agree before they are timed
            a, b = embedded.evaluate_sync(document), await opa.evaluate(document)
            assert (a.allow, a.require_approval, a.rule) == (b.allow, b.require_approval, b.rule)
        paths = {"embedded": cycling(embedded.evaluate), "opa": cycling(opa.evaluate)}
        samples: dict[str, list[float]] = {name: [] for name in paths}
        if old_tree is not None:
            samples["old_regopy"] = []
        for _ in range(rounds):
            for name, fn in paths.items():
                samples[name].extend(await sample(fn, count // rounds))
            if old_tree is not None:
                samples["old_regopy"].extend(
                    await anyio.to_thread.run_sync(
                        old_engine_samples, old_tree, policy, count // rounds
                    )
                )
        return {name: summary_ms(s) for name, s in samples.items()}
    finally:
        await opa.close()


def catalog(size: int = 1000) -> list[ToolDefinition]:
    """``size`` tools over ten servers, every tenth one high risk."""
    return [
        ToolDefinition(
            name=f"s{i % 10}__t{i:04d}",
            server=f"s{i % 10}",
            upstream_tool=f"t{i:04d}",
            description="A tool of the bench catalog, described in a sentence or two.",
            input_schema={"type": "object"},
            output_schema=None,
            annotations={"readOnlyHint": True},
            risk="high" if i % 10 == 0 else "low",
            definition_hash=f"{i:064d}",
        )
        for i in range(size)
    ]


async def lists(policy: Path, opa_url: str, count: int) -> dict[str, Any]:
    """tools/list over 1,000 tools: one decision (cached or not) vs one per tool."""
    embedded = EmbeddedEngine(policy)
    opa = OpaEngine(OpaPolicyConfig(engine="opa", url=opa_url, timeout_ms=5000))
    tools = catalog()
    state = {"i": 0}

    def listing(engine: Any, cached: bool) -> Sample:
        lists = VisibleTools()
        decider = decider_for(engine)

        async def run() -> Any:
            state["i"] += 1
            sub = "agent:bench" if cached else f"agent:bench-{state['i']}"
            principal = Principal(sub=sub, iss="https://issuer.test", roles=("agent", "reader"))
            shown = await lists.visible(decider, principal, tools)
            assert len(shown) == 900, len(shown)

        return run

    async def per_tool() -> Any:
        principal = Principal(
            sub="agent:bench", iss="https://issuer.test", roles=("agent", "reader")
        )
        shown = 0
        for tool in tools:
            document = build_input(
                principal=principal,
                action="tools/list",
                request_id="req_bench",
                transport="mcp",
                tool=tool,
            )
            shown += (await embedded.evaluate(document)).allow
        assert shown == 900, shown

    try:
        result = await interleave(
            {
                "embedded_uncached": listing(embedded, cached=False),
                "embedded_cached": listing(embedded, cached=True),
                "opa_uncached": listing(opa, cached=False),
                "opa_cached": listing(opa, cached=True),
            },
            count,
        )
        result["embedded_one_decision_per_tool"] = summary_ms(
            [await _timed(per_tool) for _ in range(10)]
        )
        return result
    finally:
        await opa.close()


async def _timed(fn: Sample) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


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
                decisions, policy, sidecar.url, args.decisions, args.old_engine_tree, **options
            )
            result["list"] = anyio.run(lists, policy, sidecar.url, args.lists, **options)
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
    parser.add_argument("--lists", type=int, default=200)
    parser.add_argument(
        "--old-engine-tree",
        type=Path,
        default=None,
        help="a checkout with the former regopy engine and its .venv (bench/old_engine.py)",
    )
    args = parser.parse_args()
    result = run(args)
    d, c, e, lst = result["decision"], result["http_client"], result["end_to_end"], result["list"]
    added_p50 = round(d["opa"]["p50_ms"] - d["embedded"]["p50_ms"], 3)
    e2e_added_p50 = round(e["gateway_opa_c1"]["p50_ms"] - e["gateway_embedded_c1"]["p50_ms"], 3)
    result["sidecar_minus_embedded_p50_ms"] = added_p50
    result["target_met"] = added_p50 <= 1.0
    result["embedded_target_met"] = d["embedded"]["p50_ms"] <= 0.25
    result["list_target_met"] = lst["embedded_uncached"]["p50_ms"] <= 20
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
    old = d.get("old_regopy")
    old_row = (
        f"| former embedded (regopy, inline) | {old['p50_ms']} ms | {old['p99_ms']} ms | "
        f"{old['mean_ms']} ms |"
        if old
        else "| former embedded (regopy) | not run (no `--old-engine-tree`) | | |"
    )
    list_rows = "\n".join(
        f"| {name.replace('_', ' ')} | {s['p50_ms']} ms | {s['p99_ms']} ms | {s['mean_ms']} ms |"
        for name, s in lst.items()
    )
    old_option = f" --old-engine-tree {args.old_engine_tree}" if args.old_engine_tree else ""
    markdown = f"""# Policy decisions: embedded engine vs OPA sidecar

Machine: {m["cpu"]}, {m["cores"]} cores, Python {m["python"]}, commit {m["commit"]},
{m["date"]}. OPA 1.22 on loopback with console decision logging; uvloop; both
gateways with `policy.timeout_ms: 2000` so that queueing at c=16 cannot abort the run.
Command: `.venv/bin/python -m bench.policy_decision --decisions {args.decisions} --calls {args.calls} --concurrent-calls {args.concurrent_calls} --lists {args.lists}{old_option}`

## Decision latency (the engine's `evaluate`, same inputs, interleaved rounds)

| engine | p50 | p99 | mean |
| --- | --- | --- | --- |
| embedded (OPA-compiled Wasm, inline) | {d["embedded"]["p50_ms"]} ms | {d["embedded"]["p99_ms"]} ms | {d["embedded"]["mean_ms"]} ms |
| OPA sidecar (HTTP, keep-alive) | {d["opa"]["p50_ms"]} ms | {d["opa"]["p99_ms"]} ms | {d["opa"]["mean_ms"]} ms |
{old_row}
| **sidecar p50 − embedded p50** | **{added_p50:+} ms** | | |

Targets: embedded p50 ≤ 0.25 ms — **{"met" if result["embedded_target_met"] else "not met"}**;
the sidecar adds at most 1 ms to the embedded p50 — **{"met" if result["target_met"] else "not met"}**.

## tools/list over 1,000 tools (900 visible), in the engine

`data.gateway.visible`, one decision for the whole catalog (gateway.policy.listing):
uncached (a new subject each time) and cached (the same subject); then the former way,
one `data.gateway.decision` per tool (10 lists).

| path | p50 | p99 | mean |
| --- | --- | --- | --- |
{list_rows}

Target: an uncached list on the embedded engine ≤ 20 ms — **{"met" if result["list_target_met"] else "not met"}**.

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
