"""The catalog over a fake upstream client: naming, schema validation, refresh."""

from __future__ import annotations

from typing import Any

import anyio.abc
import pytest

from gateway.config import McpHttpUpstream, NoCredentials, RiskConfig
from gateway.errors import InvalidArguments, UnknownTool, UpstreamError, UpstreamUnavailable
from gateway.types import ProgressCallback, ToolDefinition, ToolResult
from gateway.upstreams.base import Reconnected, UpstreamStatus
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.definitions import UpstreamTool
from gateway.upstreams.pinning import Seen

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

    def __init__(self, name: str, tools: list[UpstreamTool]) -> None:
        self.name = name
        self.tools = tools
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

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        headers: dict[str, str],
        idempotency_key: str | None,
        progress: ProgressCallback | None,
        timeout_s: float,
    ) -> ToolResult:
        raise AssertionError("not called in these tests")


def binding(client: FakeClient, **config: Any) -> Binding:
    upstream = McpHttpUpstream(name=client.name, url=f"http://{client.name}.test/mcp", **config)
    credentials = CredentialProvider(
        client.name, NoCredentials(), default_audience="http://gw.test", mint=lambda *_: ""
    )
    return Binding(client=client, config=upstream, credentials=credentials)


class UnpinnedTools:
    """A test double of pinning (gateway.upstreams.catalog.Pins): every definition is
    allowed, so these tests see the catalog alone; pinning has tests of its own."""

    def allows(self, tool: ToolDefinition) -> bool:
        return True

    def verify(self, tool: ToolDefinition) -> None:
        return None

    async def check(self, seen: list[Seen]) -> None:
        return None

    async def watch(self, interval_s: float) -> None:
        return None


async def catalog_of(*clients: FakeClient, **config: Any) -> Catalog:
    catalog = Catalog([binding(c, **config) for c in clients], pins=UnpinnedTools())
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
