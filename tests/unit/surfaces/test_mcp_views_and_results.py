"""How `/mcp` and `/mcp/{upstream}` name things, and how a read's, prompt's or
completion's outcome becomes an MCP answer (pure: no server)."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import methods as spec_methods

from gateway.errors import (
    REFUSED,
    AuditUnavailable,
    CallDenied,
    DefinitionQuarantined,
    InvalidArguments,
    PolicyUnavailable,
    UnknownResource,
    UpstreamRejected,
    UpstreamTimeout,
)
from gateway.surfaces.mcp_results import META_KEY, mcp_result, refusal, to_call_tool_result
from gateway.surfaces.mcp_views import View
from gateway.types import McpResult, Outcome, OutcomeStatus, ToolResult

ONE = View("docs")


def test_the_aggregated_view_keeps_the_gateways_names() -> None:
    view = View()
    assert view.name_in("docs__review") == "docs__review"
    assert view.uri_in("gateway:docs/file:///a") == "gateway:docs/file:///a"
    assert view.name_out("docs__review", "review") == "docs__review"
    assert view.uri_out("gateway:docs/file:///a") == "gateway:docs/file:///a"


def test_one_upstream_in_its_own_names_both_ways() -> None:
    assert ONE.name_in("review") == "docs__review"
    assert ONE.uri_in("file:///{path}") == "gateway:docs/file:///{path}"
    assert ONE.name_out("docs__review", "review") == "review"
    assert ONE.uri_out("gateway:docs/file:///{path}") == "file:///{path}"
    # Another upstream's URI is not passed off as this one's.
    assert ONE.uri_out("gateway:other/file:///a") == "gateway:other/file:///a"
    assert ONE.uri_out("file:///a") == "file:///a"


def test_resource_uris_in_content_are_shown_in_the_views_form() -> None:
    embedded = {"type": "resource", "resource": {"uri": "gateway:docs/a://b", "text": "x"}}
    link = {"type": "resource_link", "uri": "gateway:docs/a://c", "name": "c"}
    text = {"type": "text", "text": "gateway:docs/a://d"}
    assert ONE.content_out(embedded)["resource"]["uri"] == "a://b"
    assert ONE.content_out(link)["uri"] == "a://c"
    assert ONE.content_out(text) == text  # text is the upstream's words, never rewritten
    prompt = {"messages": [{"role": "user", "content": link}]}
    assert ONE.prompt_out(prompt)["messages"][0]["content"]["uri"] == "a://c"
    read = {"contents": [{"uri": "gateway:docs/a://b", "text": "x"}]}
    assert ONE.read_out(read) == {"contents": [{"uri": "a://b", "text": "x"}]}


def outcome(status: OutcomeStatus, error: object = None, result: object = None) -> Outcome:
    return Outcome("req_1", "gateway:docs/a://b", status, None, result=result, error=error)  # type: ignore[arg-type]


def test_a_read_that_succeeded_carries_the_decision_under_meta() -> None:
    document = {"contents": [{"uri": "gateway:docs/a://b", "text": "x"}]}
    done = outcome(OutcomeStatus.OK, result=McpResult("resources/read", document))
    answer = mcp_result(done, ONE, asked="a://b", is_uri=True)
    assert answer["contents"][0]["uri"] == "a://b"
    assert answer["_meta"][META_KEY] == {"request_id": "req_1", "status": "ok"}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownResource("not found", details={"uri": "x"}), -32602),
        (InvalidArguments("bad"), -32602),
        (CallDenied("no"), REFUSED),
        (DefinitionQuarantined("changed"), REFUSED),
        (UpstreamRejected("r", rpc_code=-32002, rpc_message="gone"), -32002),
        (UpstreamTimeout("slow"), -32603),
        (AuditUnavailable("down"), -32000),  # unavailable: retry later, never internal
        (PolicyUnavailable("busy", retry_after_s=1), -32000),
    ],
)
def test_every_refusal_is_a_json_rpc_error_naming_the_uri(error: object, code: int) -> None:
    refused = refusal(outcome(OutcomeStatus.DENIED, error), asked="a://b", is_uri=True)
    assert isinstance(refused, MCPError) and refused.code == code
    assert refused.error.data["uri"] == "a://b"
    assert refused.error.data[META_KEY]["request_id"] == "req_1"


def test_a_prompts_refusal_names_no_uri() -> None:
    refused = refusal(outcome(OutcomeStatus.DENIED, CallDenied("no")), asked="review", is_uri=False)
    assert "uri" not in refused.error.data


LINK = {"type": "resource_link", "uri": "gateway:docs/a://c", "name": "c"}


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [
        (OutcomeStatus.OK, ToolResult([{"type": "text", "text": "hi"}]), None),
        (OutcomeStatus.OK, ToolResult([LINK], {"n": 1}, is_error=True), None),
        (OutcomeStatus.DENIED, None, CallDenied("no grant")),
        (OutcomeStatus.PENDING_APPROVAL, None, None),
        (OutcomeStatus.ERROR, None, UpstreamTimeout("too slow")),
    ],
)
def test_a_tool_result_is_built_in_the_wire_form_the_model_would_dump(
    status: OutcomeStatus, result: ToolResult | None, error: object
) -> None:
    # Built as a dict, for speed: it must be exactly what building the model and
    # dumping it gave, and what every revision's result schema accepts as it is.
    wire = to_call_tool_result(outcome(status, error, result), ONE)
    model = types.CallToolResult.model_validate(wire, by_name=False)
    assert model.model_dump(by_alias=True, mode="json", exclude_none=True) == wire
    assert spec_methods.serialize_server_result("tools/call", "2026-07-28", wire) == wire
    older = spec_methods.serialize_server_result("tools/call", "2025-11-25", wire)
    assert older == {k: v for k, v in wire.items() if k != "resultType"}
    assert wire["_meta"][META_KEY]["status"] == status.value
    if result is not None:
        assert wire["isError"] is result.is_error
        assert wire.get("structuredContent") == result.structured_content
        if result.content[0] is LINK:
            assert wire["content"][0]["uri"] == "a://c"  # in the view's own form
    else:
        assert wire["isError"] is True
