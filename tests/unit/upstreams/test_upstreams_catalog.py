"""The catalog over a fake upstream client: naming, schema validation, refresh, and
resolving what prompts, reads and completions act on."""

from __future__ import annotations

from typing import Any

import anyio.abc
import pytest

from gateway.config import McpHttpUpstream, NoCredentials, RiskConfig
from gateway.errors import (
    DefinitionQuarantined,
    InvalidArguments,
    UnknownPrompt,
    UnknownResource,
    UnknownTool,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.offerings import DefinitionKind
from gateway.operations import LogSink, ProgressCallback
from gateway.types import ToolResult
from gateway.upstreams.base import Reconnected, UpstreamStatus
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.mcp_definitions import (
    UpstreamOfferings,
    UpstreamPrompt,
    UpstreamResource,
    UpstreamTemplate,
)
from gateway.upstreams.pin_plan import Seen
from gateway.upstreams.targets import CompletionTarget, PromptTarget, ReadTarget

pytestmark = pytest.mark.anyio

CREATE_ISSUE = UpstreamTool(
    name="create_issue",
    description="Opens an issue",
    input_schema={
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "labels": {"type": "array", "items": {"type": "string"}},
            "meta": {
                "type": "object",
                "properties": {"priority": {"type": "integer", "maximum": 5}},
            },
        },
        "required": ["title"],
        "additionalProperties": False,
    },
    annotations={"destructiveHint": True},
)
BROKEN = UpstreamTool(name="broken", description=None, input_schema={"type": "no-such-type"})
PING = UpstreamTool(name="ping", description=None, input_schema={"type": "object"})


class FakeClient:
    """An upstream whose tool list the test sets (or makes fail)."""

    def __init__(
        self, name: str, tools: list[UpstreamTool], offerings: UpstreamOfferings | None = None
    ) -> None:
        self.name = name
        self.tools = tools
        self.offerings = offerings or UpstreamOfferings([], [], [])
        self.error: UpstreamError | None = None

    @property
    def status(self) -> UpstreamStatus:
        return UpstreamStatus(connected=self.error is None)

    async def start(self, task_group: anyio.abc.TaskGroup, on_reconnect: Reconnected) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_tools(self) -> list[UpstreamTool]:
        if self.error is not None:
            raise self.error
        return list(self.tools)

    async def list_offerings(self) -> UpstreamOfferings:
        return self.offerings

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        headers: dict[str, str],
        idempotency_key: str | None,
        progress: ProgressCallback | None,
        log: LogSink | None,
        timeout_s: float,
    ) -> ToolResult:
        raise AssertionError("not called in these tests")


class FakeMcpClient(FakeClient):
    """An upstream that also serves prompts and resources (an MCP server)."""

    async def read_resource(self, uri: str, **_: Any) -> dict[str, Any]:
        raise AssertionError("not called in these tests")

    async def get_prompt(self, name: str, arguments: dict[str, str], **_: Any) -> dict[str, Any]:
        raise AssertionError("not called in these tests")

    async def complete(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise AssertionError("not called in these tests")

    async def subscribe_resource(self, uri: str, **_: Any) -> None:
        raise AssertionError("not called in these tests")

    async def unsubscribe_resource(self, uri: str) -> None:
        raise AssertionError("not called in these tests")


def binding(client: FakeClient, **config: Any) -> Binding:
    upstream = McpHttpUpstream(name=client.name, url=f"http://{client.name}.test/mcp", **config)
    credentials = CredentialProvider(
        client.name, NoCredentials(), default_audience="http://gw.test", mint=lambda *_: ""
    )
    return Binding(client=client, config=upstream, credentials=credentials)


class UnpinnedTools:
    """A test double of pinning (gateway.upstreams.catalog.Pins): every definition is
    allowed but those named in ``quarantined``, so these tests see the catalog alone;
    pinning has tests of its own."""

    def __init__(self) -> None:
        self.quarantined: set[tuple[str, str]] = set()

    def allows(self, kind: DefinitionKind, name: str, definition_hash: str) -> bool:
        return (kind, name) not in self.quarantined

    def verify(self, kind: DefinitionKind, name: str, definition_hash: str) -> None:
        if (kind, name) in self.quarantined:
            raise DefinitionQuarantined(f"{kind} {name} is quarantined")

    async def check(self, seen: list[Seen]) -> None:
        return None

    async def watch(self, interval_s: float) -> None:
        return None


async def catalog_of(
    *clients: FakeClient, pins: UnpinnedTools | None = None, **config: Any
) -> Catalog:
    catalog = Catalog([binding(c, **config) for c in clients], pins=pins or UnpinnedTools())
    await catalog.refresh()
    return catalog


async def test_tools_are_named_by_upstream() -> None:
    catalog = await catalog_of(FakeClient("github", [CREATE_ISSUE]), FakeClient("mon", [PING]))
    assert sorted(t.name for t in catalog.tools()) == ["github__create_issue", "mon__ping"]
    entry = catalog.resolve("github__create_issue")
    assert entry.definition.upstream_tool == "create_issue"
    assert entry.definition.server == "github"
    assert entry.config.name == "github"


async def test_valid_arguments_pass() -> None:
    entry = (await catalog_of(FakeClient("github", [CREATE_ISSUE]))).resolve("github__create_issue")
    entry.validate({"title": "Bug", "labels": ["a"], "meta": {"priority": 2}})


@pytest.mark.parametrize(
    ("arguments", "path", "validator"),
    [
        ({}, "(arguments)", "required"),
        ({"title": ""}, "title", "minLength"),
        ({"title": 3}, "title", "type"),
        ({"title": "x", "labels": ["ok", 7]}, "labels/1", "type"),
        ({"title": "x", "meta": {"priority": 9}}, "meta/priority", "maximum"),
        ({"title": "x", "extra": True}, "(arguments)", "additionalProperties"),
    ],
)
async def test_invalid_arguments_name_the_path(
    arguments: dict[str, Any], path: str, validator: str
) -> None:
    entry = (await catalog_of(FakeClient("github", [CREATE_ISSUE]))).resolve("github__create_issue")
    with pytest.raises(InvalidArguments) as caught:
        entry.validate(arguments)
    message = caught.value.message
    assert message.startswith("arguments do not match the input schema of github__create_issue: ")
    assert f": {path}: " in message
    assert caught.value.details["validator"] == validator
    assert caught.value.http_status == 400


async def test_tool_with_an_invalid_schema_is_not_offered() -> None:
    catalog = await catalog_of(FakeClient("svc", [BROKEN, PING]))
    assert [t.name for t in catalog.tools()] == ["svc__ping"]
    with pytest.raises(UnknownTool):
        catalog.resolve("svc__broken")


async def test_unknown_tool() -> None:
    catalog = await catalog_of(FakeClient("svc", [PING]))
    for name in ["svc__nope", "ping", "other__ping", ""]:
        with pytest.raises(UnknownTool) as caught:
            catalog.resolve(name)
        assert caught.value.details == {"tool": name}
        assert caught.value.http_status == 404


async def test_failed_refresh_keeps_the_known_tools() -> None:
    client = FakeClient("svc", [PING])
    catalog = await catalog_of(client)
    client.tools = []
    client.error = UpstreamUnavailable("connection refused")
    await catalog.refresh()
    assert [t.name for t in catalog.tools()] == ["svc__ping"]
    assert catalog.upstream_status()["svc"].connected is False


async def test_upstream_down_from_the_start_has_no_tools_and_others_still_load() -> None:
    down = FakeClient("down", [PING])
    down.error = UpstreamUnavailable("no route")
    catalog = await catalog_of(down, FakeClient("up", [PING]))
    assert [t.name for t in catalog.tools()] == ["up__ping"]


async def test_refresh_replaces_the_tool_list() -> None:
    client = FakeClient("svc", [PING, CREATE_ISSUE])
    other = FakeClient("other", [PING])
    catalog = await catalog_of(client, other)
    client.tools = [CREATE_ISSUE]
    await catalog.refresh("svc")
    assert sorted(t.name for t in catalog.tools()) == ["other__ping", "svc__create_issue"]


async def test_changed_definition_changes_the_hash() -> None:
    client = FakeClient("svc", [PING])
    catalog = await catalog_of(client)
    before = catalog.resolve("svc__ping").definition.definition_hash
    client.tools = [UpstreamTool(name="ping", description="now different", input_schema={})]
    await catalog.refresh()
    assert catalog.resolve("svc__ping").definition.definition_hash != before


async def test_risk_and_labels_come_from_the_upstream_config() -> None:
    catalog = await catalog_of(
        FakeClient("github", [CREATE_ISSUE, PING]),
        risk=RiskConfig(tools={"ping": "low"}),
        labels=["external"],
    )
    issue = catalog.resolve("github__create_issue").definition
    assert issue.risk == "medium"  # annotations of an untrusted upstream are ignored
    assert issue.labels == ("external",)
    assert catalog.resolve("github__ping").definition.risk == "low"


DOCS = UpstreamOfferings(
    prompts=[
        UpstreamPrompt(
            "review",
            "Review",
            "Reviews code",
            ({"name": "code", "required": True}, {"name": "tone"}),
        )
    ],
    resources=[UpstreamResource("file:///readme.md", "readme", mime_type="text/markdown")],
    templates=[UpstreamTemplate("file:///notes/{name}", "notes")],
)


async def test_prompts_and_resources_are_named_by_upstream() -> None:
    catalog = await catalog_of(FakeMcpClient("docs", [], DOCS))
    assert [p.name for p in catalog.prompts()] == ["docs__review"]
    assert [r.uri for r in catalog.resources()] == ["gateway:docs/file:///readme.md"]
    assert [t.uri_template for t in catalog.templates()] == ["gateway:docs/file:///notes/{name}"]
    prompt = catalog.resolve_target("prompts/get", "docs__review")
    assert isinstance(prompt, PromptTarget) and prompt.definition.upstream_name == "review"


async def test_a_read_is_routed_by_its_prefix_and_never_guessed() -> None:
    catalog = await catalog_of(FakeMcpClient("docs", [], DOCS), FakeClient("other", [PING]))
    listed = catalog.resolve_target("resources/read", "gateway:docs/file:///readme.md")
    assert isinstance(listed, ReadTarget) and listed.resource is not None
    assert (listed.server, listed.upstream_uri) == ("docs", "file:///readme.md")
    through_template = catalog.resolve_target("resources/read", "gateway:docs/file:///notes/a")
    assert isinstance(through_template, ReadTarget) and through_template.resource is None
    assert through_template.template is not None
    unlisted = catalog.resolve_target("resources/read", "gateway:docs/mem://elsewhere")
    assert isinstance(unlisted, ReadTarget) and unlisted.definition_hash is None
    for uri in ["file:///readme.md", "gateway:nobody/file:///x", "gateway:docs", "gateway:/x"]:
        with pytest.raises(UnknownResource) as caught:
            catalog.resolve_target("resources/read", uri)
        assert caught.value.details == {"uri": uri}
        assert caught.value.jsonrpc_code == -32602
    with pytest.raises(UnknownResource):  # an HTTP API has no resources
        catalog.resolve_target("resources/read", "gateway:other/x")


async def test_quarantined_prompts_resources_and_templates_are_hidden_and_refused() -> None:
    pins = UnpinnedTools()
    pins.quarantined = {
        ("prompt", "docs__review"),
        ("resource", "gateway:docs/file:///readme.md"),
        ("resource_template", "gateway:docs/file:///notes/{name}"),
    }
    catalog = await catalog_of(FakeMcpClient("docs", [], DOCS), pins=pins)
    assert (catalog.prompts(), catalog.resources(), catalog.templates()) == ([], [], [])
    for method, target in [
        ("prompts/get", "docs__review"),
        ("resources/read", "gateway:docs/file:///readme.md"),
        ("resources/read", "gateway:docs/file:///notes/a"),  # only through that template
        ("completion/complete", "gateway:docs/file:///notes/{name}"),
    ]:
        with pytest.raises(DefinitionQuarantined):
            catalog.resolve_target(method, target)  # type: ignore[arg-type]


async def test_completion_targets_know_their_argument_names() -> None:
    catalog = await catalog_of(FakeMcpClient("docs", [], DOCS))
    prompt = catalog.resolve_target("completion/complete", "docs__review")
    assert isinstance(prompt, CompletionTarget) and prompt.ref == "ref/prompt"
    assert prompt.argument_names == ("code", "tone")
    prompt.validate({"argument": {"name": "tone", "value": "fr"}})
    template = catalog.resolve_target("completion/complete", "gateway:docs/file:///notes/{name}")
    assert isinstance(template, CompletionTarget) and template.argument_names == ("name",)
    with pytest.raises(InvalidArguments):
        template.validate({"argument": {"name": "tone", "value": "x"}})
    with pytest.raises(InvalidArguments):
        template.validate({"argument": {"name": "name"}})
    with pytest.raises(UnknownPrompt):
        catalog.resolve_target("completion/complete", "docs__nope")


async def test_prompt_arguments_are_strings_and_required_ones_present() -> None:
    target = (await catalog_of(FakeMcpClient("docs", [], DOCS))).resolve_target(
        "prompts/get", "docs__review"
    )
    target.validate({"code": "x = 1"})
    for bad in [{}, {"tone": "calm"}, {"code": 1}]:
        with pytest.raises(InvalidArguments):
            target.validate(bad)
