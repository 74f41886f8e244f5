"""Traces from a whole gateway in this process, collected by the OpenTelemetry SDK's
in-memory exporter (gateway/telemetry.py): real upstream processes (the recording MCP
server over HTTP and over stdio, the recording HTTP API), the embedded Rego engine,
the audit log on SQLite.

A caller's W3C trace context — a ``traceparent`` header, or ``params._meta`` (SEP-414)
— makes the gateway's spans part of the caller's trace, parented as the call path
runs; the upstream receives the upstream call span as its parent; and the audit entry
of the call names the trace. Tracing off, none of that happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id
from starlette.testclient import TestClient

from gateway import telemetry
from gateway.app import build_app
from gateway.config import parse_config
from gateway.surfaces.mcp import META_KEY
from tests.support.processes import read_calls, write_policy
from tests.support.tracing import (
    CLIENT_SPAN,
    TRACE_ID,
    TRACEPARENT,
    Gateway,
    gateway_config,
    recording_upstreams,
)
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with recording_upstreams(tmp_path_factory.mktemp("upstreams")) as running:
        yield running


@pytest.fixture(scope="module")
def collected() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the module's gateways, every span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use(provider)
    try:
        yield exporter
    finally:
        telemetry.stop()


@pytest.fixture
def spans(collected: InMemorySpanExporter) -> InMemorySpanExporter:
    collected.clear()
    return collected


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstreams: dict[str, Any],
    collected: InMemorySpanExporter,
) -> Iterator[Gateway]:
    server = gateway_config(tmp_path_factory.mktemp("gateway"), upstreams)
    app = build_app(parse_config(server.config, source="test"))
    with TestClient(app, base_url=server.url) as client:
        yield Gateway(server, client)


def _named(spans: InMemorySpanExporter, request_id: str) -> dict[str, ReadableSpan]:
    """The spans of one call's trace, by name (each appears once per call)."""
    finished = spans.get_finished_spans()
    call = next(s for s in finished if s.attributes.get("gateway.request_id") == request_id)
    trace = [s for s in finished if s.context.trace_id == call.context.trace_id]
    names = [s.name for s in trace]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in trace}


def _parent(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


def _id(span: ReadableSpan) -> str:
    return format_span_id(span.context.span_id)


@pytest.mark.parametrize("via_sdk", [False, True], ids=["direct", "sdk-transport"])
def test_a_client_traceparent_header_makes_the_call_part_of_its_trace(
    gateway: Gateway, spans: InMemorySpanExporter, upstreams: dict[str, Any], via_sdk: bool
) -> None:
    result = gateway.mcp_call(
        "up__echo",
        {"text": "traced"},
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
        via_sdk=via_sdk,
    )
    request_id = result["_meta"][META_KEY]["request_id"]
    named = _named(spans, request_id)

    assert {format_trace_id(s.context.trace_id) for s in named.values()} == {TRACE_ID}
    http = named["POST /mcp"]
    call = named["tools/call up__echo"]
    assert _parent(http) == CLIENT_SPAN
    assert _parent(named["gateway.authenticate"]) == _id(http)
    assert _parent(call) == _id(http)
    for child in ("gateway.policy.decide", "gateway.audit.append", "upstream tools/call"):
        assert _parent(named[child]) == _id(call), child

    decision = named["gateway.policy.decide"].attributes
    assert decision["gateway.policy.engine"] == "embedded"
    assert decision["gateway.policy.allowed"] is True
    assert decision["gateway.policy.rule"] and decision["gateway.policy.revision"]
    assert call.attributes["gateway.status"] == "ok"
    assert named["upstream tools/call"].attributes["gateway.upstream"] == "up"

    # The upstream joined the trace under the upstream call span: header and _meta.
    upstream_span = _id(named["upstream tools/call"])
    sent = read_calls(upstreams["mcp"].call_log)[-1]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{upstream_span}-01"
    assert sent["tracestate"] == "vendor=1"
    assert sent["meta"]["traceparent"] == sent["traceparent"]
    assert sent["meta"]["tracestate"] == "vendor=1"

    assert gateway.attempt(request_id)["trace_id"] == TRACE_ID


def test_a_traceparent_in_mcp_meta_wins_over_the_header(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    result = gateway.mcp_call(
        "up__echo",
        {"text": "meta"},
        headers={"traceparent": TRACEPARENT},
        meta={"traceparent": f"00-{other_trace}-b7ad6b7169203331-01"},
    )
    request_id = result["_meta"][META_KEY]["request_id"]
    named = _named(spans, request_id)
    call = named["tools/call up__echo"]
    assert format_trace_id(call.context.trace_id) == other_trace
    assert _parent(call) == "b7ad6b7169203331"
    assert gateway.attempt(request_id)["trace_id"] == other_trace


def test_a_stdio_upstream_gets_the_trace_context_in_meta(
    gateway: Gateway, spans: InMemorySpanExporter, upstreams: dict[str, Any]
) -> None:
    result = gateway.mcp_call(
        "local__echo", {"text": "stdio"}, headers={"traceparent": TRACEPARENT}
    )
    named = _named(spans, result["_meta"][META_KEY]["request_id"])
    sent = read_calls(upstreams["stdio_log"])[-1]
    assert sent["meta"]["traceparent"] == f"00-{TRACE_ID}-{_id(named['upstream tools/call'])}-01"


def test_an_http_api_upstream_gets_the_traceparent_header(
    gateway: Gateway, spans: InMemorySpanExporter, upstreams: dict[str, Any]
) -> None:
    response = gateway.client.post(
        "/v1/tools/api__create/call",
        json={"arguments": {"name": "x"}},
        headers={**gateway.server.headers(), "traceparent": TRACEPARENT},
    )
    assert response.status_code == 200, response.text
    named = _named(spans, response.json()["request_id"])
    assert _parent(named["tools/call api__create"]) == _id(named["POST /v1/tools/{name}/call"])
    sent = read_calls(upstreams["api"].call_log)[-1]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{_id(named['upstream tools/call'])}-01"


def test_a_denied_call_is_traced_with_its_decision(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    # No grant for this role: policy denies, nothing is forwarded.
    result = gateway.mcp_call(
        "up__echo", {"text": "x"}, headers={"traceparent": TRACEPARENT}, roles=("guest",)
    )
    named = _named(spans, result["_meta"][META_KEY]["request_id"])
    assert named["gateway.policy.decide"].attributes["gateway.policy.allowed"] is False
    assert named["tools/call up__echo"].attributes["gateway.status"] == "denied"
    assert "upstream tools/call" not in named


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE_ID}-0000000000000000-01",  # all-zero parent id
        "00-not-hex-at-all",
        f"00-{TRACE_ID.upper()}-{CLIENT_SPAN}-01",  # upper case is not W3C
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01\n" + "x" * 10_000,
    ],
    ids=["zero-trace", "zero-parent", "garbage", "upper-case", "trailing-junk"],
)
def test_a_malformed_traceparent_starts_a_trace_of_the_gateways_own(
    gateway: Gateway, spans: InMemorySpanExporter, traceparent: str
) -> None:
    result = gateway.mcp_call(
        "up__echo", {"text": "x"}, meta={"traceparent": traceparent, "tracestate": "a=b"}
    )
    request_id = result["_meta"][META_KEY]["request_id"]
    named = _named(spans, request_id)
    trace_id = format_trace_id(named["tools/call up__echo"].context.trace_id)
    assert trace_id not in traceparent
    # The audit log names the gateway's trace, never what the caller sent.
    assert gateway.attempt(request_id)["trace_id"] == trace_id


def test_an_unsampled_caller_trace_records_no_spans_and_no_trace_id(
    gateway: Gateway, spans: InMemorySpanExporter, upstreams: dict[str, Any]
) -> None:
    result = gateway.mcp_call(
        "up__echo", {"text": "x"}, headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-00"}
    )
    request_id = result["_meta"][META_KEY]["request_id"]
    assert spans.get_finished_spans() == ()
    assert "trace_id" not in gateway.attempt(request_id)
    # The caller's decision not to sample travels on with its trace.
    sent = read_calls(upstreams["mcp"].call_log)[-1]
    assert sent["traceparent"].startswith(f"00-{TRACE_ID}-") and sent["traceparent"].endswith("-00")


def test_an_approval_wait_is_a_span_of_the_call(
    tmp_path: Path, upstreams: dict[str, Any], spans: InMemorySpanExporter
) -> None:
    server = gateway_config(tmp_path, upstreams)
    grants = [{"role": "agent", "tool": "up__*", "approval": {"approvers": ["role:approver"]}}]
    server.config["policy"]["path"] = str(write_policy(tmp_path / "held", grants))
    server.config["approvals"] = {"hold_s": 0}
    app = build_app(parse_config(server.config, source="test"))
    with TestClient(app, base_url=server.url) as client:
        gateway = Gateway(server, client)
        result = gateway.mcp_call("up__echo", {"text": "x"}, headers={"traceparent": TRACEPARENT})
    request_id = result["_meta"][META_KEY]["request_id"]
    named = _named(spans, request_id)
    wait = named["gateway.approval.wait"]
    assert _parent(wait) == _id(named["tools/call up__echo"])
    assert wait.attributes["gateway.approval.status"] == "pending"
    assert named["gateway.policy.decide"].attributes["gateway.policy.require_approval"] is True


def test_an_executor_run_and_its_steps_are_spans_and_each_step_call_their_child(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    plan = {
        "name": "traced",
        "steps": [
            {"id": "first", "tool": "up__echo", "arguments": {"text": "one"}},
            {"id": "second", "tool": "up__echo", "arguments": {"text": "two"}, "needs": ["first"]},
        ],
    }
    headers = {**gateway.server.headers(), "Idempotency-Key": "traced-1"}
    submitted = gateway.client.post("/v1/runs", json={"plan": plan}, headers=headers)
    assert submitted.status_code == 201, submitted.text
    run_id = submitted.json()["run_id"]

    def finished_run() -> ReadableSpan | None:
        found = [s for s in spans.get_finished_spans() if s.name == f"gateway.run {run_id}"]
        return found[0] if found else None

    run = eventually(finished_run, f"the span of run {run_id}")
    assert run.attributes["gateway.run.result"] == "succeeded"
    trace = [s for s in spans.get_finished_spans() if s.context.trace_id == run.context.trace_id]
    steps = {s.attributes["gateway.step_id"]: s for s in trace if s.name.startswith("gateway.step")}
    assert set(steps) == {"first", "second"}
    calls = [s for s in trace if s.name == "tools/call up__echo"]
    assert len(calls) == 2
    for step in steps.values():
        assert _parent(step) == _id(run)
        (call,) = [
            c
            for c in calls
            if c.attributes["gateway.step_id"] == step.attributes["gateway.step_id"]
        ]
        assert _parent(call) == _id(step)
        assert gateway.attempt(call.attributes["gateway.request_id"])[
            "trace_id"
        ] == format_trace_id(run.context.trace_id)
