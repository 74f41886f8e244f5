"""The entries of every list, built once per definition (gateway.surfaces.wire_forms,
mcp_lists and REST's `GET /v1/tools`): a list shows the current definition of exactly
the items policy let the principal see — after a definition changes, is quarantined
or approved again, after an upstream stops offering it, after the policy changes — in
every MCP revision (through the SDK's own serializer, as its runner does) and on REST,
and the same bytes as the entries built per list before.

A real catalog over an upstream test double, real `Lists` over a real `Decider` whose
engine is a test double answering by role; the real engines answer in the conformance
and e2e tests (tests/e2e/test_tools_list_large_catalog.py, test_tool_pinning.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import anyio.abc
import mcp_types as types
import pytest
from mcp_types.methods import serialize_server_result
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from pydantic import BaseModel
from starlette.requests import Request

from gateway.config import McpHttpUpstream, NoCredentials
from gateway.errors import DefinitionQuarantined
from gateway.executor.mcp_tools import DEFINITIONS as WORKFLOW_TOOLS
from gateway.lists import Lists
from gateway.offerings import DefinitionKind
from gateway.surfaces.auth import PRINCIPAL_STATE_KEY
from gateway.surfaces.mcp_lists import McpLists, entry_model, mcp_tool
from gateway.surfaces.mcp_views import View
from gateway.surfaces.rest import RestSurface, ToolList, _tool_info
from gateway.surfaces.wire_forms import SWEEP_SLACK, WireForms
from gateway.types import Decision, Principal, ToolDefinition
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
from tests.support.deciding import decider_for

pytestmark = pytest.mark.anyio

TOOLS = 1000
ERAS = ("2025-11-25", "2026-07-28")
LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
# The cache hint the gateway's server gives every list (mcp_server.build_mcp_server),
# which the SDK's runner adds to a result dict before its serializer.
HINT = {"ttlMs": 0, "cacheScope": "private"}


def tool(index: int, description: str = "Looks a record up") -> UpstreamTool:
    return UpstreamTool(
        name=f"t{index:04d}",
        description=f"{description} ({index})",
        input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
        annotations={"readOnlyHint": True},
        title=f"Tool {index}" if index % 2 else None,
    )


class Upstream:
    """An MCP upstream test double whose lists the test sets."""

    name = "many"

    def __init__(self, tools: int) -> None:
        self.tools = [tool(i) for i in range(tools)]
        self.offerings = UpstreamOfferings(
            [UpstreamPrompt("greet", "Greeting", "Says hello", ({"name": "who"},))],
            [UpstreamResource("test://static", "static", mime_type="text/plain", size=5)],
            [UpstreamTemplate("test://item/{id}", "item", description="An item")],
        )

    @property
    def status(self) -> UpstreamStatus:
        return UpstreamStatus(connected=True)

    async def start(self, task_group: anyio.abc.TaskGroup, on_reconnect: Reconnected) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_tools(self) -> list[UpstreamTool]:
        return list(self.tools)

    async def list_offerings(self) -> UpstreamOfferings:
        return self.offerings


class Pins:
    """A test double of pinning: everything is approved but what ``quarantined`` names."""

    def __init__(self) -> None:
        self.quarantined: set[str] = set()

    def allows(self, kind: DefinitionKind, name: str, definition_hash: str) -> bool:
        return name not in self.quarantined

    def verify(self, kind: DefinitionKind, name: str, definition_hash: str) -> None:
        if name in self.quarantined:
            raise DefinitionQuarantined(f"{name} is quarantined")

    async def check(self, seen: list[Seen]) -> None:
        return None

    async def watch(self, interval_s: float) -> None:
        return None


class ByRole:
    """A policy engine test double: ``data.gateway.visible`` answers by the subject's
    first role (``all``, ``even`` tools and every other item, ``none``), or what
    ``answer`` says after a policy change (a new revision)."""

    name = "double"
    evaluates_inline = False

    revision_follows_policy = True

    def __init__(self) -> None:
        self.revision = "rev-1"
        self.hidden: set[str] = set()  # what a changed policy hides from everyone
        self.asked = 0

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        raise AssertionError("a list must not ask per item")

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str | None]:
        self.asked += 1
        role = (list_input["subject"]["roles"] or ["none"])[0]
        names = [_name(item) for item in list_input["items"]]
        if role == "even":
            names = [n for n in names if not n.startswith("many__t") or int(n[-4:]) % 2 == 0]
        elif role != "all":
            names = []
        return {"visible": [n for n in names if n not in self.hidden]}, self.revision

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _name(item: dict[str, Any]) -> str:
    return str(item.get("tool") or item.get("prompt") or item["uri"])


def principal(role: str) -> Principal:
    return Principal(sub=f"agent:{role}", iss="https://issuer.test", roles=(role,))


ALL, EVEN, NONE = principal("all"), principal("even"), principal("none")
AGGREGATED = View()  # `/mcp`


class Gateway:
    """The parts a list goes through: catalog, policy filter, MCP entries, REST."""

    def __init__(self, tools: int) -> None:
        self.upstream = Upstream(tools)
        self.pins = Pins()
        self.engine = ByRole()
        credentials = CredentialProvider(
            "many", NoCredentials(), default_audience="http://gw.test", mint=lambda *_: ""
        )
        config = McpHttpUpstream(name="many", url="http://many.test/mcp")
        self.catalog = Catalog(
            [Binding(client=self.upstream, config=config, credentials=credentials)],  # type: ignore[arg-type]
            pins=self.pins,
        )
        self.lists = Lists(self.catalog, decider_for(self.engine))
        self.mcp = McpLists(self.catalog)
        self.rest = RestSurface(SimpleNamespace(catalog=self.catalog, lists=self.lists))  # type: ignore[arg-type]

    async def mcp_list(
        self, method: str, who: Principal, version: str, view: View = AGGREGATED
    ) -> dict[str, Any]:
        """What the SDK's runner writes for the handler's result (`_serialize`)."""
        asking: dict[str, Any] = {"transport": "mcp", "request_id": "r", "upstream": view.upstream}
        if method == "tools/list":
            tools = await self.lists.tools(who, **asking)
            result = self.mcp.tools(tools, view, version, tasks=True).result
        elif method == "prompts/list":
            result = self.mcp.prompts(
                await self.lists.offered("prompts", who, **asking), view, version
            ).result
        elif method == "resources/list":
            listed = await self.lists.offered("resources", who, **asking)
            result = self.mcp.resources(listed, view, version).result
        else:
            listed = await self.lists.offered("resource_templates", who, **asking)
            result = self.mcp.templates(listed, view, version).result
        return serialize_server_result(method, version, {**HINT, **result})

    async def mcp_names(self, who: Principal, version: str) -> list[str]:
        return [t["name"] for t in (await self.mcp_list("tools/list", who, version))["tools"]]

    async def rest_list(self, who: Principal) -> bytes:
        scope = {"type": "http", "method": "GET", "path": "/v1/tools", "headers": []}
        scope["state"] = {PRINCIPAL_STATE_KEY: who}
        response = await self.rest.list_tools(Request(scope))
        return bytes(response.body)

    async def rest_names(self, who: Principal) -> list[str]:
        return [t["name"] for t in json.loads(await self.rest_list(who))["tools"]]


async def started(tools: int = 20) -> Gateway:
    gateway = Gateway(tools)
    await gateway.catalog.refresh()
    return gateway


@pytest.fixture
async def gateway() -> Gateway:
    return await started()


# --- the same answer as before, for every revision ------------------------------------


def old_tools_result(tools: list[ToolDefinition], view: View, version: str) -> dict[str, Any]:
    """How the handler built ``tools/list`` before (a model per tool, per list), through
    the SDK's serializer as its runner does."""
    result = types.ListToolsResult(
        tools=[types.Tool.model_validate(mcp_tool(t, view, task_support=True)) for t in tools]
    )
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return serialize_server_result("tools/list", version, dumped)


@pytest.mark.parametrize("version", sorted(KNOWN_PROTOCOL_VERSIONS))
@pytest.mark.parametrize("view", [View(), View("many")])
async def test_the_entries_are_those_built_per_list_before(
    gateway: Gateway, version: str, view: View
) -> None:
    catalog = gateway.catalog
    tools = catalog.tools()
    assert await gateway.mcp_list("tools/list", ALL, version, view) == old_tools_result(
        tools, view, version
    )
    old = {
        "prompts/list": types.ListPromptsResult.model_validate(
            {
                "prompts": [
                    p.to_listing(view.name_out(p.name, p.upstream_name))
                    for p in gateway.catalog.prompts()
                ]
            }
        ),
        "resources/list": types.ListResourcesResult.model_validate(
            {"resources": [r.to_listing(view.uri_out(r.uri)) for r in catalog.resources()]}
        ),
        "resources/templates/list": types.ListResourceTemplatesResult.model_validate(
            {
                "resourceTemplates": [
                    t.to_listing(view.uri_out(t.uri_template)) for t in catalog.templates()
                ]
            }
        ),
    }
    for method, result in old.items():
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        expected = serialize_server_result(method, version, dumped)
        assert await gateway.mcp_list(method, ALL, version, view) == expected


async def test_the_rest_body_is_the_tool_list_model(gateway: Gateway) -> None:
    expected = ToolList(tools=[_tool_info(t) for t in gateway.catalog.tools()])
    assert await gateway.rest_list(ALL) == expected.model_dump_json().encode()


@pytest.mark.parametrize("version", sorted(KNOWN_PROTOCOL_VERSIONS))
@pytest.mark.parametrize("method", LISTS)
def test_every_revision_has_a_model_of_an_entry(method: Any, version: str) -> None:
    # What the SDK's runner validates each entry against (`entry_model` raises
    # `UnexpectedResultModel` if an SDK upgrade changed the shape of a list result).
    assert issubclass(entry_model(method, version), BaseModel)


# --- each principal its own subset ----------------------------------------------------


async def test_three_principals_see_their_own_subsets_in_every_era_and_on_rest() -> None:
    gateway = await started(TOOLS)
    every = [f"many__t{i:04d}" for i in range(TOOLS)]
    even = every[::2]
    for _ in range(2):  # the second time from the caches: the same answers
        for version in ERAS:
            assert await gateway.mcp_names(ALL, version) == every
            assert await gateway.mcp_names(EVEN, version) == even
            assert await gateway.mcp_names(NONE, version) == []
        assert await gateway.rest_names(ALL) == every
        assert await gateway.rest_names(EVEN) == even
        assert await gateway.rest_names(NONE) == []
    # Other lists likewise: entries are shared, what is shown is not.
    for version in ERAS:
        prompts = await gateway.mcp_list("prompts/list", EVEN, version)
        assert [p["name"] for p in prompts["prompts"]] == ["many__greet"]
        assert (await gateway.mcp_list("prompts/list", NONE, version))["prompts"] == []


async def test_entries_are_built_once_per_definition(gateway: Gateway) -> None:
    tools = gateway.catalog.tools()
    first = gateway.mcp.tools(tools, View(), "2026-07-28", tasks=True).result
    again = gateway.mcp.tools(tools[:10], View(), "2026-07-28", tasks=True).result
    assert all(a is b for a, b in zip(again["tools"], first["tools"], strict=False))
    # Another view or revision is another entry.
    other = gateway.mcp.tools(tools[:1], View("many"), "2026-07-28", tasks=True).result
    assert other["tools"][0] is not first["tools"][0]
    assert other["tools"][0].name == "t0000"


async def test_a_listing_is_keyed_by_what_its_result_depends_on(gateway: Gateway) -> None:
    """The direct path keeps a list's written result under `Listing.key`
    (docs/decisions/0038): equal keys only for the same definitions in the same order,
    view, revision and task support."""
    tools = gateway.catalog.tools()

    def key(listed: list[ToolDefinition], view: View = AGGREGATED, **how: Any) -> Any:
        version, tasks = how.get("version", "2026-07-28"), how.get("tasks", True)
        return gateway.mcp.tools(listed, view, version, tasks=tasks).key

    assert key(tools) == key(list(tools))
    assert (
        len(
            {
                key(tools),
                key(tools[:-1]),
                key(tools[::-1]),
                key(tools, View("many")),
                key(tools, version="2025-11-25"),
                key(tools, tasks=False),
            }
        )
        == 6
    )
    # A re-read of the upstream makes new definitions: a new key, though equal in value.
    await gateway.catalog.refresh()
    assert gateway.catalog.tools()[0] is not tools[0]
    assert key(gateway.catalog.tools()) != key(tools)


async def test_the_gateways_own_tools_are_in_the_same_one_decision(gateway: Gateway) -> None:
    """``workflow__*`` are listed beside the catalog's tools on `/mcp` and decided in the
    same ``data.gateway.visible`` decision (they were asked one by one before)."""
    asking: dict[str, Any] = {"transport": "mcp", "request_id": "r"}
    before = gateway.engine.asked
    tools = await gateway.lists.tools(EVEN, **asking, local=WORKFLOW_TOOLS)
    assert gateway.engine.asked == before + 1  # ByRole.evaluate refuses per-item asks
    names = [t.name for t in tools]
    assert names[-len(WORKFLOW_TOOLS) :] == [t.name for t in WORKFLOW_TOOLS]
    assert names[0] == "many__t0000"
    gateway.engine.hidden = {"workflow__submit_plan"}
    gateway.engine.revision = "rev-2"  # a changed policy: the cached answer is not used
    again = [t.name for t in await gateway.lists.tools(EVEN, **asking, local=WORKFLOW_TOOLS)]
    assert "workflow__submit_plan" not in again
    assert "workflow__get_run" in again
    assert await gateway.lists.tools(NONE, **asking, local=WORKFLOW_TOOLS) == []


# --- what changes the entries ---------------------------------------------------------


async def test_a_changed_definition_is_listed_as_it_is_now(gateway: Gateway) -> None:
    for version in ERAS:
        await gateway.mcp_list("tools/list", ALL, version)
    await gateway.rest_list(ALL)
    gateway.upstream.tools[7] = tool(7, "Changed")
    gateway.upstream.offerings = replace(
        gateway.upstream.offerings,
        prompts=[UpstreamPrompt("greet", "Greeting", "Says goodbye", ())],
    )
    await gateway.catalog.refresh()
    for version in ERAS:
        listed = (await gateway.mcp_list("tools/list", ALL, version))["tools"]
        assert listed[7]["description"] == "Changed (7)"
        assert listed[8]["description"] == "Looks a record up (8)"
        prompts = (await gateway.mcp_list("prompts/list", ALL, version))["prompts"]
        assert prompts[0]["description"] == "Says goodbye"
    rest = json.loads(await gateway.rest_list(ALL))["tools"]
    assert rest[7]["description"] == "Changed (7)"


async def test_quarantined_and_approved_again(gateway: Gateway) -> None:
    for version in ERAS:
        await gateway.mcp_list("tools/list", ALL, version)
    gateway.pins.quarantined = {"many__t0003", "many__greet", "gateway:many/test://static"}
    for version in ERAS:
        assert "many__t0003" not in await gateway.mcp_names(ALL, version)
        assert (await gateway.mcp_list("prompts/list", ALL, version))["prompts"] == []
        assert (await gateway.mcp_list("resources/list", ALL, version))["resources"] == []
    assert "many__t0003" not in await gateway.rest_names(ALL)
    gateway.pins.quarantined = set()  # approved
    for version in ERAS:
        assert "many__t0003" in await gateway.mcp_names(ALL, version)
        assert len((await gateway.mcp_list("prompts/list", ALL, version))["prompts"]) == 1
    assert "many__t0003" in await gateway.rest_names(ALL)


async def test_what_an_upstream_no_longer_offers_is_not_listed(gateway: Gateway) -> None:
    for version in ERAS:
        await gateway.mcp_list("tools/list", ALL, version)
    await gateway.rest_list(ALL)
    del gateway.upstream.tools[10:]
    await gateway.catalog.refresh()
    for version in ERAS:
        assert len(await gateway.mcp_names(ALL, version)) == 10
    assert len(await gateway.rest_names(ALL)) == 10
    # The upstream gone altogether: it lists nothing.
    gateway.upstream.tools = []
    gateway.upstream.offerings = UpstreamOfferings([], [], [])
    await gateway.catalog.refresh()
    for version in ERAS:
        for method in LISTS:
            listed = await gateway.mcp_list(method, ALL, version)
            assert [value for key, value in listed.items() if isinstance(value, list)] == [[]]
    assert await gateway.rest_names(ALL) == []


async def test_a_policy_change_changes_what_is_listed(gateway: Gateway) -> None:
    for version in ERAS:
        assert "many__t0002" in await gateway.mcp_names(EVEN, version)
    asked = gateway.engine.asked
    gateway.engine.hidden = {"many__t0002", "many__greet"}
    gateway.engine.revision = "rev-2"  # a reload
    for version in ERAS:
        assert "many__t0002" not in await gateway.mcp_names(EVEN, version)
        assert (await gateway.mcp_list("prompts/list", EVEN, version))["prompts"] == []
    assert "many__t0002" not in await gateway.rest_names(EVEN)
    assert gateway.engine.asked > asked


# --- bounded ----------------------------------------------------------------------------


def test_forms_of_definitions_the_catalog_dropped_are_swept() -> None:
    current: list[object] = [object() for _ in range(100)]
    built: list[object] = []

    def build(item: object) -> str:
        built.append(item)
        return f"form of {id(item)}"

    forms: WireForms[object, str] = WireForms(build, lambda: current)
    forms.of(current)
    forms.of(current)
    assert len(built) == 100  # once per definition
    for _ in range(5):  # five re-reads of the upstream: new definitions each time
        current = [object() for _ in range(100)]
        forms.of(current)
        assert len(forms) <= 2 * 100 + SWEEP_SLACK
    forms.sweep()
    assert len(forms) == 100
