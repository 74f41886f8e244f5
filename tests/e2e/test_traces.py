"""A real gateway process with ``tracing.endpoint`` set exports its spans over OTLP/HTTP
to a receiver in this test (tests/support/otlp_receiver.py), as it would to a
collector: a client's traceparent — as an HTTP header from a raw client, or in
``_meta`` from the MCP SDK's own client — makes the call's spans part of the
client's trace, parented as the call path runs; the upstream receives the gateway's
upstream call span as its parent; the audit entry names the trace.

The batch exporter's delay is set far beyond the test, so every span arrives only
because the gateway sends what it holds when it stops (SIGTERM): no waiting on time.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from gateway.audit import read_entries
from gateway.store import create_engine
from gateway.surfaces.mcp import META_KEY
from tests.e2e.mcp_client import connect
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.processes import (
    GatewayServer,
    McpUpstreamServer,
    read_calls,
    spawn,
    upstream_grants,
    write_policy,
)
from tests.support.tracing import CLIENT_SPAN, ENVELOPE, TRACE_ID, TRACEPARENT, VERSION
from tests.support.waiting import eventually

SDK_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SDK_PARENT = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two calls through a traced gateway, then the gateway stopped: what each side saw."""
    directory = tmp_path_factory.mktemp("traced")
    upstream = McpUpstreamServer.start(directory)
    with OtlpReceiver() as receiver:
        gateway = GatewayServer.configure(
            directory / "gateway",
            upstreams=[{"name": "up", "url": upstream.url}],
            policy=write_policy(directory, upstream_grants("up")),
            # Nothing is exported before the gateway stops (see the module's docstring).
            env={"OTEL_BSP_SCHEDULE_DELAY": "3600000"},
        )
        gateway.config["tracing"] = {
            "endpoint": receiver.endpoint,
            "service_name": "gateway-under-test",
        }
        gateway.start()
        try:
            raw = _raw_call(gateway)
            sdk = anyio.run(_sdk_call, gateway)
            assert receiver.spans == []  # still held by the batch exporter
        finally:
            gateway.stop()  # SIGTERM: a graceful stop (uvicorn then re-raises the signal)
            upstream.process.stop()
        yield {
            "receiver": receiver,
            "raw": raw,
            "sdk": sdk,
            "upstream_calls": read_calls(upstream.call_log),
            "database": create_engine(gateway.config["storage"]["url"]),
        }


def _raw_call(gateway: GatewayServer) -> str:
    """A sessionless tools/call with the trace context in HTTP headers; its request id."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "up__echo", "arguments": {"text": "raw"}, "_meta": ENVELOPE},
    }
    response = httpx.post(
        gateway.mcp_url,
        json=body,
        headers={
            **gateway.headers(),
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": VERSION,
            "Mcp-Method": "tools/call",
            "Mcp-Name": "up__echo",
            "traceparent": TRACEPARENT,
            "tracestate": "client=1",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["content"][0]["text"] == "raw"
    return str(result["_meta"][META_KEY]["request_id"])


async def _sdk_call(gateway: GatewayServer) -> str:
    """The MCP SDK's client sending the trace context in ``_meta`` (SEP-414)."""
    async with connect(gateway.mcp_url, gateway.token(), VERSION) as client:
        result = await client.call_tool(
            "up__echo",
            {"text": "sdk"},
            meta={"traceparent": f"00-{SDK_TRACE_ID}-{SDK_PARENT}-01"},
        )
    assert result.meta is not None
    return str(result.meta[META_KEY]["request_id"])


def _spans(traced: dict[str, Any], trace_id: str) -> dict[str, ReceivedSpan]:
    spans = traced["receiver"].of_trace(trace_id)
    names = [s.name for s in spans]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in spans}


def _attempt(traced: dict[str, Any], request_id: str) -> dict[str, Any]:
    (entry,) = read_entries(traced["database"], ref=request_id, kind="call.attempt")
    assert entry.payload is not None
    return entry.payload


def test_the_call_path_is_in_the_clients_trace_parented_as_it_ran(
    traced: dict[str, Any],
) -> None:
    spans = _spans(traced, TRACE_ID)
    http, call = spans["POST /mcp"], spans["tools/call up__echo"]
    assert http.parent_span_id == CLIENT_SPAN
    assert http.attributes["http.response.status_code"] == 200
    assert spans["gateway.authenticate"].parent_span_id == http.span_id
    assert call.parent_span_id == http.span_id
    assert call.attributes["gateway.request_id"] == traced["raw"]
    for child in ("gateway.policy.decide", "gateway.audit.append", "upstream tools/call"):
        assert spans[child].parent_span_id == call.span_id, child
    decision = spans["gateway.policy.decide"].attributes
    assert decision["gateway.policy.engine"] == "embedded"
    assert decision["gateway.policy.allowed"] is True
    assert decision["gateway.policy.revision"]
    assert {s.resource["service.name"] for s in spans.values()} == {"gateway-under-test"}
    assert set(traced["receiver"].content_types) == {"application/x-protobuf"}


def test_the_upstream_receives_the_upstream_call_span_as_its_parent(
    traced: dict[str, Any],
) -> None:
    upstream_span = _spans(traced, TRACE_ID)["upstream tools/call"].span_id
    (sent,) = [c for c in traced["upstream_calls"] if c["arguments"] == {"text": "raw"}]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{upstream_span}-01"
    assert sent["tracestate"] == "client=1"
    assert sent["meta"]["traceparent"] == sent["traceparent"]


def test_the_audit_entry_names_the_trace(traced: dict[str, Any]) -> None:
    assert _attempt(traced, traced["raw"])["trace_id"] == TRACE_ID
    assert _attempt(traced, traced["sdk"])["trace_id"] == SDK_TRACE_ID


def test_an_mcp_client_sending_meta_gets_the_call_into_its_trace(
    traced: dict[str, Any],
) -> None:
    spans = _spans(traced, SDK_TRACE_ID)
    call = spans["tools/call up__echo"]
    assert call.parent_span_id == SDK_PARENT
    assert call.attributes["gateway.request_id"] == traced["sdk"]
    (sent,) = [c for c in traced["upstream_calls"] if c["arguments"] == {"text": "sdk"}]
    assert sent["meta"]["traceparent"] == (
        f"00-{SDK_TRACE_ID}-{spans['upstream tools/call'].span_id}-01"
    )


def test_check_config_names_the_collector(tmp_path: Path) -> None:
    gateway = GatewayServer.configure(
        tmp_path, upstreams=[], policy=write_policy(tmp_path, upstream_grants("up"))
    )
    gateway.config["tracing"] = {"endpoint": "http://collector.internal:4318"}
    gateway.config_path.write_text(yaml.safe_dump(gateway.config))
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(gateway.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "http://collector.internal:4318/v1/traces" in checked.stdout


@pytest.fixture(scope="module")
def traced_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A run submitted (with a client traceparent) to a gateway that runs no workers,
    executed by a `gateway worker` process exporting its own spans; then both stopped."""
    directory = tmp_path_factory.mktemp("worker")
    upstream = McpUpstreamServer.start(directory)
    with OtlpReceiver() as receiver:
        gateway = GatewayServer.configure(
            directory / "gateway",
            upstreams=[{"name": "up", "url": upstream.url}],
            policy=write_policy(directory, upstream_grants("up")),
            env={"OTEL_BSP_SCHEDULE_DELAY": "3600000"},
        )
        gateway.config["tracing"] = {"endpoint": receiver.endpoint, "service_name": "gateway"}
        gateway.config["executor"] = {"workers": 0}
        gateway.start()
        worker_config = gateway.directory / "worker.yaml"  # beside it: the same keys
        worker_config.write_text(
            yaml.safe_dump(
                {
                    **gateway.config,
                    "tracing": {"endpoint": receiver.endpoint, "service_name": "worker"},
                    "executor": {"workers": 1, "poll_s": 0.05},
                }
            )
        )
        worker = spawn(
            [sys.executable, "-m", "gateway", "worker", "--config", str(worker_config)],
            directory / "worker.log",
            env={"OTEL_BSP_SCHEDULE_DELAY": "3600000"},
        )
        try:
            plan = {
                "name": "traced",
                "steps": [{"id": "only", "tool": "up__echo", "arguments": {"text": "run"}}],
            }
            submitted = httpx.post(
                f"{gateway.url}/v1/runs",
                json={"plan": plan},
                headers={
                    **gateway.headers(),
                    "Idempotency-Key": "traced-run",
                    "traceparent": TRACEPARENT,
                },
                timeout=30,
            )
            assert submitted.status_code == 201, submitted.text
            run_id = submitted.json()["run_id"]

            def finished() -> dict[str, Any] | None:
                run = httpx.get(
                    f"{gateway.url}/v1/runs/{run_id}", headers=gateway.headers(), timeout=30
                ).json()
                return run if run["status"] in ("succeeded", "failed") else None

            run = eventually(finished, f"run {run_id} finished", detail=worker.log)
            assert run["status"] == "succeeded", run
        finally:
            worker.stop()
            gateway.stop()
            upstream.process.stop()
        yield {
            "receiver": receiver,
            "run_id": run_id,
            "database": create_engine(gateway.config["storage"]["url"]),
        }


def test_a_worker_process_traces_the_run_its_step_and_the_steps_call(
    traced_worker: dict[str, Any],
) -> None:
    receiver: OtlpReceiver = traced_worker["receiver"]
    run_id = traced_worker["run_id"]
    [run] = [s for s in receiver.spans if s.name == f"gateway.run {run_id}"]
    assert run.resource["service.name"] == "worker"
    assert run.attributes["gateway.run.result"] == "succeeded"
    spans = _spans(traced_worker, run.trace_id)
    step, call = spans["gateway.step only"], spans["tools/call up__echo"]
    assert step.parent_span_id == run.span_id
    assert call.parent_span_id == step.span_id
    assert call.attributes["gateway.transport"] == "executor"
    assert spans["upstream tools/call"].parent_span_id == call.span_id
    assert _attempt(traced_worker, call.attributes["gateway.request_id"])["trace_id"] == (
        run.trace_id
    )


def test_the_submission_is_in_the_clients_trace_and_the_run_links_to_it(
    traced_worker: dict[str, Any],
) -> None:
    spans = _spans(traced_worker, TRACE_ID)
    submission = spans["POST /v1/runs"]
    assert submission.resource["service.name"] == "gateway"
    decision = spans["gateway.policy.decide"]
    assert decision.parent_span_id == submission.span_id
    assert decision.attributes["gateway.policy.allowed"] is True

    run_id = traced_worker["run_id"]
    [run] = [s for s in traced_worker["receiver"].spans if s.name == f"gateway.run {run_id}"]
    assert run.links == ((TRACE_ID, submission.span_id),)
    (submitted,) = read_entries(traced_worker["database"], ref=run_id, kind="run.submitted")
    assert submitted.payload is not None
    assert submitted.payload["provenance"]["trace"] == {
        "trace_id": TRACE_ID,
        "span_id": submission.span_id,
    }
