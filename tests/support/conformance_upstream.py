"""The server side of the official MCP conformance suite, as a test upstream of ours.

    python -m tests.support.conformance_upstream PORT

Streamable HTTP on 127.0.0.1:PORT at ``/mcp``, both protocol eras on the one endpoint:
2025-11-25 with sessions (``Mcp-Session-Id``: server-to-client requests, resource
subscriptions and a logging level need one) and 2026-07-28 sessionless, where
elicitation, sampling and roots are multi-round-trip ``InputRequiredResult``s. Built on
the Python SDK (mcp 2.x), like the gateway.

It offers every fixture the suite's required server scenarios name
(``@modelcontextprotocol/conformance``'s ``requirements/2025-11-25.yaml`` and
``2026-07-28.yaml``): the ``test_*`` tools, the ``test://`` resources and template, the
``test_*`` prompts, completion, logging, progress, subscriptions, the MRTR
``test_input_required_result_*`` tools with a sealed ``requestState`` (the SDK's
``RequestStateBoundary``), caching hints, a not-found error naming the URI and
DNS-rebinding protection. tests/e2e/test_mcp_conformance.py runs the suite against it
directly and through the gateway.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Annotated, Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.server.mcpserver.resources import FunctionResource
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import Field

MODERN = "2026-07-28"
IMAGE_PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
AUDIO_WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
WATCHED_URI = "test://watched-resource"
MISSING_CAPABILITY = -32021
MISSING_CAPABILITY_METHOD = "sampling"  # what test_missing_capability needs declared

_CACHED = (
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
)

server = MCPServer(
    "conformance-upstream",
    version="1.0.0",
    cache_hints={method: CacheHint(ttl_ms=0, scope="private") for method in _CACHED},  # type: ignore[misc]
)
_subscriptions: set[str] = set()
_watched_version = 0


def _modern(ctx: Context) -> bool:
    return ctx.protocol_version == MODERN


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)])


def _resource(uri: str, text: str, mime_type: str = "text/plain") -> types.EmbeddedResource:
    return types.EmbeddedResource(
        resource=types.TextResourceContents(uri=uri, mime_type=mime_type, text=text)
    )


# --- plain tools ---------------------------------------------------------------------


@server.tool(description="Tests simple text content response", structured_output=False)
def test_simple_text() -> types.CallToolResult:
    return _text("This is a simple text response for testing.")


@server.tool(description="Tests image content response", structured_output=False)
def test_image_content() -> types.CallToolResult:
    return types.CallToolResult(content=[types.ImageContent(data=IMAGE_PNG, mime_type="image/png")])


@server.tool(description="Tests audio content response", structured_output=False)
def test_audio_content() -> types.CallToolResult:
    return types.CallToolResult(content=[types.AudioContent(data=AUDIO_WAV, mime_type="audio/wav")])


@server.tool(description="Tests embedded resource content response", structured_output=False)
def test_embedded_resource() -> types.CallToolResult:
    return types.CallToolResult(
        content=[_resource("test://embedded-resource", "This is an embedded resource content.")]
    )


@server.tool(description="Tests text, image and resource content together", structured_output=False)
def test_multiple_content_types() -> types.CallToolResult:
    return types.CallToolResult(
        content=[
            types.TextContent(text="Multiple content types test:"),
            types.ImageContent(data=IMAGE_PNG, mime_type="image/png"),
            _resource(
                "test://mixed-content-resource",
                json.dumps({"test": "data", "value": 123}),
                "application/json",
            ),
        ]
    )


@server.tool(description="Sends three info log messages while it runs", structured_output=False)
async def test_tool_with_logging(ctx: Context) -> types.CallToolResult:
    for i, message in enumerate(
        ("Tool execution started", "Tool processing data", "Tool execution completed")
    ):
        if i:
            await anyio.sleep(0.05)
        await ctx.info(message)
    return _text("Tool with logging executed successfully")


@server.tool(description="Reports progress 0, 50 and 100 of 100", structured_output=False)
async def test_tool_with_progress(ctx: Context) -> types.CallToolResult:
    for i, done in enumerate((0, 50, 100)):
        if i:
            await anyio.sleep(0.05)
        await ctx.report_progress(done, 100, f"Completed step {done} of 100")
    meta = ctx.request_context.meta
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return _text(str(token if token is not None else 0))


@server.tool(description="Tests error response handling", structured_output=False)
def test_error_handling() -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text="This tool intentionally returns an error for testing")],
        is_error=True,
    )


@server.tool(description="Closes the SSE stream mid-call (SEP-1699)", structured_output=False)
async def test_reconnection(ctx: Context) -> types.CallToolResult:
    # A message first, so that the stream's priming event has gone out before the
    # stream is closed (the event is written when the stream opens).
    await ctx.info("Before disconnect")
    await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return _text("Reconnection test completed successfully.")


@server.tool(
    description="Needs the sampling capability declared (-32021 otherwise)",
    structured_output=False,
)
def test_missing_capability(ctx: Context) -> types.CallToolResult:
    capabilities = ctx.client_capabilities
    if capabilities is None or getattr(capabilities, MISSING_CAPABILITY_METHOD) is None:
        raise MCPError(
            code=MISSING_CAPABILITY,
            message="Missing required client capability: sampling",
            data={"requiredCapabilities": {MISSING_CAPABILITY_METHOD: {}}},
        )
    return _text("the client declared sampling")


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@server.tool(description="Tool with JSON Schema 2020-12 features", structured_output=False)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> types.CallToolResult:
    return _text(f"contact {name} by {contactMethod}")


# Listed with the schema as written (the SDK would derive one from the signature).
server._tool_manager.get_tool("json_schema_2020_12_tool").parameters = JSON_SCHEMA_2020_12  # type: ignore[union-attr]


@server.tool(
    description="Takes an argument mirrored into an Mcp-Param-Region header (SEP-2243)",
    structured_output=False,
)
def test_custom_headers(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
) -> types.CallToolResult:
    return _text(f"served in {region}")


# --- hooks that change what the server lists (list_changed and resource updates) ------


@server.tool(
    description="Changes the tool list (adds or removes a tool) and says so",
    structured_output=False,
)
async def test_trigger_tool_change(ctx: Context) -> types.CallToolResult:
    if server._tool_manager.get_tool("test_dynamic_tool") is None:
        server.add_tool(lambda: "dynamic", name="test_dynamic_tool", description="Comes and goes")
    else:
        server.remove_tool("test_dynamic_tool")
    await ctx.notify_tools_changed()  # 2026-07-28: subscriptions/listen streams
    if not _modern(ctx):
        await ctx.session.send_tool_list_changed()
    return _text("the tool list changed")


@server.tool(
    description="Changes the prompt list (adds or removes a prompt) and says so",
    structured_output=False,
)
async def test_trigger_prompt_change(ctx: Context) -> types.CallToolResult:
    names = {p.name for p in server._prompt_manager.list_prompts()}
    if "test_dynamic_prompt" in names:
        server._prompt_manager._prompts.pop("test_dynamic_prompt", None)
    else:
        server.add_prompt(
            Prompt.from_function(
                lambda: "dynamic", name="test_dynamic_prompt", description="Comes and goes"
            )
        )
    await ctx.notify_prompts_changed()
    if not _modern(ctx):
        await ctx.session.send_prompt_list_changed()
    return _text("the prompt list changed")


@server.tool(
    description="Changes test://watched-resource and notifies its subscribers",
    structured_output=False,
)
async def test_trigger_resource_update(ctx: Context) -> types.CallToolResult:
    global _watched_version
    _watched_version += 1
    await ctx.notify_resource_updated(WATCHED_URI)  # 2026-07-28: subscriptions/listen
    if not _modern(ctx) and WATCHED_URI in _subscriptions:
        # 2025-11-25: to the subscribed session (this upstream keeps one subscriber set).
        await ctx.session.send_resource_updated(WATCHED_URI)
    return _text(f"{WATCHED_URI} is now at version {_watched_version}")


# --- tools that ask the client: 2025 requests on the call's stream, 2026 MRTR -----------


async def _ask(ctx: Context, key: str, request: types.ServerRequest, result_type: type) -> Any:
    """The client's answer to `request`: in 2025-11-25 a server-to-client request on
    the call's own stream; in 2026-07-28 None when it must be asked for first (the
    caller returns `_input_required`), else the answer from ``inputResponses``."""
    if _modern(ctx):
        return (ctx.input_responses or {}).get(key)
    return await ctx.session.send_request(
        request,
        result_type,
        request_read_timeout_seconds=30,
        metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
    )


def _input_required(key: str, request: types.ServerRequest) -> types.InputRequiredResult:
    return types.InputRequiredResult(input_requests={key: request})


def _sampling(prompt: str, max_tokens: int = 100) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(text=prompt))],
            max_tokens=max_tokens,
        )
    )


def _elicit(message: str, schema: dict[str, Any]) -> types.ElicitRequest:
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=message, requested_schema=schema)
    )


def _sampled_text(answer: Any) -> str:
    content = getattr(answer, "content", None)
    if isinstance(content, list):
        content = content[0] if content else None
    return getattr(content, "text", None) or "No response"


@server.tool(description="Asks the client for an LLM completion", structured_output=False)
async def test_sampling(
    prompt: str, ctx: Context
) -> types.CallToolResult | types.InputRequiredResult:
    request = _sampling(prompt)
    answer = await _ask(ctx, "sampling", request, types.CreateMessageResult)
    if answer is None:
        return _input_required("sampling", request)
    return _text(f"LLM response: {_sampled_text(answer)}")


RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"response": {"type": "string", "description": "User's response"}},
    "required": ["response"],
}
SEP1034_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}
SEP1330_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Simple enum without titles",
            "enum": ["active", "inactive", "pending"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Enum with titled options (oneOf)",
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Multi-select without titles",
            "items": {"type": "string", "enum": ["read", "write", "execute"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Multi-select with titled options",
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            },
        },
        "legacyEnum": {
            "type": "string",
            "description": "Legacy enum with enumNames",
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    },
    "required": [],
}


async def _elicitation_tool(
    ctx: Context, message: str, schema: dict[str, Any], prefix: str
) -> types.CallToolResult | types.InputRequiredResult:
    request = _elicit(message, schema)
    answer = await _ask(ctx, "elicitation", request, types.ElicitResult)
    if answer is None:
        return _input_required("elicitation", request)
    return _text(f"{prefix}: action={answer.action}, content={json.dumps(answer.content or {})}")


@server.tool(description="Asks the user for input (form elicitation)", structured_output=False)
async def test_elicitation(
    message: str, ctx: Context
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicitation_tool(ctx, message, RESPONSE_SCHEMA, "User response")


@server.tool(
    description="Elicitation with defaults for every primitive (SEP-1034)", structured_output=False
)
async def test_elicitation_sep1034_defaults(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicitation_tool(
        ctx,
        "Please review and update the form fields with defaults",
        SEP1034_SCHEMA,
        "Elicitation completed",
    )


@server.tool(
    description="Elicitation with each enum schema form (SEP-1330)", structured_output=False
)
async def test_elicitation_sep1330_enums(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicitation_tool(
        ctx,
        "Please select values using different enum schema types",
        SEP1330_SCHEMA,
        "Elicitation completed",
    )


@server.tool(
    description="Needs elicitation: a request on the stream in 2025, MRTR in 2026",
    structured_output=False,
)
async def test_streaming_elicitation(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicitation_tool(ctx, "What is your name?", NAME_SCHEMA, "Streaming elicitation")


@server.tool(
    description="Logs at info level (2026: only when the request asked for logs)",
    structured_output=False,
)
async def test_logging_tool(ctx: Context) -> types.CallToolResult:
    await ctx.info("test_logging_tool ran")
    return _text("logged")


# --- 2026-07-28 multi-round-trip fixtures (SEP-2322) ------------------------------------

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _name_request(message: str = "What is your name?") -> types.ElicitRequest:
    return _elicit(message, NAME_SCHEMA)


def _accepted(answer: Any, field: str) -> Any:
    """The field of an accepted ElicitResult, or None for anything else."""
    if isinstance(answer, types.ElicitResult) and answer.action == "accept" and answer.content:
        return answer.content.get(field)
    return None


@server.tool(description="Asks for the user's name by MRTR", structured_output=False)
def test_input_required_result_elicitation(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    answer = (ctx.input_responses or {}).get("user_name")
    if not isinstance(answer, types.ElicitResult):
        return _input_required("user_name", _name_request())
    return _text(f"Hello, {_accepted(answer, 'name') or 'stranger'}!")


@server.tool(description="Asks for a sampled answer by MRTR", structured_output=False)
def test_input_required_result_sampling(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    answer = (ctx.input_responses or {}).get("capital_question")
    if not isinstance(answer, types.CreateMessageResult):
        return _input_required("capital_question", _sampling("What is the capital of France?"))
    return _text(f"Model said: {_sampled_text(answer)}")


@server.tool(description="Asks for the client's roots by MRTR", structured_output=False)
def test_input_required_result_list_roots(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    answer = (ctx.input_responses or {}).get("client_roots")
    if not isinstance(answer, types.ListRootsResult):
        return _input_required("client_roots", types.ListRootsRequest())
    return _text(
        f"Client exposed {len(answer.roots)} root(s): {[str(r.uri) for r in answer.roots]}"
    )


CONFIRM_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@server.tool(description="Round-trips a sealed requestState", structured_output=False)
def test_input_required_result_request_state(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    answer = (ctx.input_responses or {}).get("confirm")
    if isinstance(answer, types.ElicitResult) and ctx.request_state == "confirm-pending":
        return _text(f"state-ok: confirmed={_accepted(answer, 'ok')}")
    return types.InputRequiredResult(
        input_requests={"confirm": _elicit("Please confirm", CONFIRM_SCHEMA)},
        request_state="confirm-pending",
    )


@server.tool(
    description="Asks for elicitation, sampling and roots at once", structured_output=False
)
def test_input_required_result_multiple_inputs(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    wanted = {
        "user_name": _name_request(),
        "greeting": _sampling("Generate a greeting", 50),
        "client_roots": types.ListRootsRequest(),
    }
    responses = ctx.input_responses or {}
    if ctx.request_state == "multiple" and wanted.keys() <= responses.keys():
        return _text("All inputs received.")
    missing = {k: v for k, v in wanted.items() if k not in responses} or wanted
    return types.InputRequiredResult(input_requests=missing, request_state="multiple")


@server.tool(description="Two rounds of elicitation with evolving state", structured_output=False)
def test_input_required_result_multi_round(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
    responses = ctx.input_responses or {}
    if state["round"] == 1 and "step1" in responses:
        return types.InputRequiredResult(
            input_requests={
                "step2": _elicit(
                    "Step 2: What is your favorite color?",
                    {
                        "type": "object",
                        "properties": {"color": {"type": "string"}},
                        "required": ["color"],
                    },
                )
            },
            request_state=json.dumps({"round": 2, "name": _accepted(responses["step1"], "name")}),
        )
    if state["round"] == 2 and "step2" in responses:
        return _text(f"{state['name']} likes {_accepted(responses['step2'], 'color')}.")
    return types.InputRequiredResult(
        input_requests={"step1": _name_request("Step 1: What is your name?")},
        request_state=json.dumps({"round": 1}),
    )


@server.tool(description="Refuses a tampered requestState", structured_output=False)
def test_input_required_result_tampered_state(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    # The SDK's RequestStateBoundary seals the state and refuses a modified one (-32602)
    # before this handler runs.
    if ctx.request_state == "tamper-check" and ctx.input_responses:
        return _text("state-ok: the requestState verified")
    return types.InputRequiredResult(
        input_requests={"confirm": _elicit("Please confirm", CONFIRM_SCHEMA)},
        request_state="tamper-check",
    )


@server.tool(description="Asks only for what the client declared", structured_output=False)
def test_input_required_result_capabilities(
    ctx: Context,
) -> types.CallToolResult | types.InputRequiredResult:
    capabilities = ctx.client_capabilities
    responses = ctx.input_responses or {}
    if responses:
        return _text(f"received: {sorted(responses)}")
    wanted: dict[str, types.InputRequest] = {}
    if capabilities is not None and capabilities.sampling is not None:
        wanted["capital_question"] = _sampling("What is the capital of France?")
    if capabilities is not None and capabilities.elicitation is not None:
        wanted["user_name"] = _name_request()
    if capabilities is not None and capabilities.roots is not None:
        wanted["client_roots"] = types.ListRootsRequest()
    if not wanted:
        return _text("the client declared nothing to ask for")
    return types.InputRequiredResult(input_requests=wanted)


# --- resources ---------------------------------------------------------------------------


@server.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a 1x1 PNG)."""
    return base64.b64decode(IMAGE_PNG)


@server.resource("test://template/{id}/data", name="template-data", mime_type="application/json")
def template_data(id: str) -> str:
    """A resource template with one parameter."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


server.add_resource(
    FunctionResource.from_function(
        lambda: f"Watched resource content (version {_watched_version})",
        uri=WATCHED_URI,
        name="watched-resource",
        description="A resource clients subscribe to",
        mime_type="text/plain",
    )
)


async def _read_resource(
    ctx: Any, params: types.ReadResourceRequestParams
) -> types.ReadResourceResult | types.InputRequiredResult:
    """The MCPServer's read, with SEP-2164's not-found error: -32602 naming the URI."""
    uri = str(params.uri)
    known = {str(r.uri) for r in server._resource_manager.list_resources()}
    templates = server._resource_manager.list_templates()
    if uri not in known and not any(t.matches(uri) is not None for t in templates):
        raise MCPError(code=types.INVALID_PARAMS, message="Resource not found", data={"uri": uri})
    return await server._handle_read_resource(ctx, params)


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    _subscriptions.add(str(params.uri))
    return types.EmptyResult()


async def _unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    _subscriptions.discard(str(params.uri))
    return types.EmptyResult()


async def _set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


# --- prompts ------------------------------------------------------------------------------


@server.prompt(description="A simple prompt without arguments")
def test_simple_prompt() -> list[UserMessage]:
    return [UserMessage(content=types.TextContent(text="This is a simple prompt for testing."))]


@server.prompt(description="A prompt with two required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
    return [UserMessage(content=types.TextContent(text=text))]


@server.prompt(description="A prompt with an embedded resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    return [
        UserMessage(content=_resource(resourceUri, "Embedded resource content for testing.")),
        UserMessage(content=types.TextContent(text="Please process the embedded resource above.")),
    ]


@server.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[UserMessage]:
    return [
        UserMessage(content=types.ImageContent(data=IMAGE_PNG, mime_type="image/png")),
        UserMessage(content=types.TextContent(text="Please analyze the image above.")),
    ]


@server.prompt(description="A prompt that asks for context by MRTR")
def test_input_required_result_prompt(
    ctx: Context,
) -> list[UserMessage] | types.InputRequiredResult:
    answer = (ctx.input_responses or {}).get("user_context")
    if not isinstance(answer, types.ElicitResult):
        return _input_required(
            "user_context",
            _elicit(
                "What context should the prompt use?",
                {
                    "type": "object",
                    "properties": {"context": {"type": "string"}},
                    "required": ["context"],
                },
            ),
        )
    text = f"Prompt with context: {_accepted(answer, 'context')}"
    return [UserMessage(content=types.TextContent(text=text))]


@server.completion()
async def _complete(
    ref: types.PromptReference | types.ResourceTemplateReference,
    argument: types.CompletionArgument,
    context: types.CompletionContext | None,
) -> types.Completion:
    choices = ["paris", "park", "parade"] if argument.name in ("arg1", "arg2", "id") else []
    values = [v for v in choices if v.startswith(argument.value)]
    return types.Completion(values=values, total=len(values), has_more=False)


# --- the wiring --------------------------------------------------------------------------


class _EventStore(EventStore):
    """In-memory SSE event store (per stream), so a client can resume a closed stream
    (test_reconnection, SEP-1699)."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = str(len(self._events) + 1)
        self._events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        stream = next((s for s, e, _ in self._events if e == last_event_id), None)
        if stream is None:
            return None
        for s, e, message in self._events:
            if s == stream and int(e) > int(last_event_id) and message is not None:
                await send_callback(EventMessage(message, e))
        return stream


def _wire() -> None:
    low = server._lowlevel_server
    low.add_request_handler("resources/read", types.ReadResourceRequestParams, _read_resource)
    low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)
    low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)
    low.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level)
    # 2025-11-25 capabilities: the HTTP transport builds them without notification
    # options, which would advertise every listChanged as false.
    build = low.create_initialization_options

    def with_list_changed(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        return build(NotificationOptions(True, True, True), *args, **kwargs)

    low.create_initialization_options = with_list_changed  # type: ignore[method-assign]


_wire()


def main(port: int) -> None:
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=False,
        event_store=_EventStore(),
        retry_interval=100,
        host="127.0.0.1",
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
