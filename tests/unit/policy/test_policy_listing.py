"""A list in one decision (gateway.policy.listing): what is asked, what is cached under
which key, and that every failure shows nothing. The engine is an explicit test double
that records what it was asked, behind a real `Decider`; the real engines are in the
conformance, integration and e2e tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.errors import NoDecision, PolicyError, PolicyUnavailable
from gateway.policy.listing import ListUnsupported, VisibleTools
from gateway.types import Decision, Principal, ToolDefinition
from tests.support.deciding import decider_for

pytestmark = pytest.mark.anyio


class RecordingEngine:
    """Answers every list with ``answer`` (or raises it), counting the questions."""

    name = "double"
    evaluates_inline = False

    def __init__(self, answer: Any, revision: str = "rev-1", *, follows: bool = True) -> None:
        self.answer = answer
        self.revision = revision
        self.revision_follows_policy = follows
        self.asked: list[dict[str, Any]] = []

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        raise AssertionError("a list must not ask per tool")

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str | None]:
        self.asked.append(list_input)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer, self.revision

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def tool(name: str, risk: str = "low") -> ToolDefinition:
    server, upstream = name.split("__")
    return ToolDefinition(
        name=name,
        server=server,
        upstream_tool=upstream,
        description=None,
        input_schema={"type": "object"},
        output_schema=None,
        annotations={},
        risk=risk,  # type: ignore[arg-type]
        definition_hash=name.ljust(64, "0"),
    )


ALICE = Principal(sub="agent:alice", iss="https://issuer.test", roles=("agent",))
CATALOG = [tool("a__one"), tool("a__two"), tool("b__three")]


async def test_one_question_for_the_whole_catalog_without_context() -> None:
    engine = RecordingEngine({"visible": ["b__three", "a__one", "not__in_catalog"]})
    shown = await VisibleTools().visible(decider_for(engine), ALICE, CATALOG)
    assert [t.name for t in shown] == ["a__one", "b__three"]  # catalog order, known tools
    (asked,) = engine.asked
    assert set(asked) == {"version", "action", "subject", "items"}  # no time, no request id
    assert asked["action"] == "tools/list"
    assert asked["subject"] == ALICE.to_policy_subject()
    assert [item["tool"] for item in asked["items"]] == ["a__one", "a__two", "b__three"]
    assert asked["items"][0] == CATALOG[0].to_policy_resource()


async def test_the_answer_is_cached_per_subject_revision_and_catalog() -> None:
    engine = RecordingEngine({"visible": ["a__one"]})
    lists = VisibleTools()
    decider = decider_for(engine)
    for _ in range(3):
        assert [t.name for t in await lists.visible(decider, ALICE, CATALOG)] == ["a__one"]
    assert len(engine.asked) == 1
    await lists.visible(decider, replace(ALICE, roles=("agent", "ops")), CATALOG)
    assert len(engine.asked) == 2  # another subject document
    await lists.visible(decider, ALICE, [*CATALOG[:2], tool("b__three", risk="high")])
    assert len(engine.asked) == 3  # another catalog: a tool's risk changed
    engine.revision = "rev-2"
    await lists.visible(decider, ALICE, CATALOG)
    assert len(engine.asked) == 4  # another policy
    await lists.visible(decider, ALICE, CATALOG)
    assert len(engine.asked) == 4


async def test_nothing_is_cached_under_a_revision_that_does_not_follow_the_policy() -> None:
    """An OPA server without bundles reports one ``opa:<url>`` whatever it serves: a
    policy pushed to it meanwhile must be asked, not a cached answer shown."""
    engine = RecordingEngine({"visible": ["a__one"]}, "opa:http://opa", follows=False)
    lists = VisibleTools()
    decider = decider_for(engine)
    assert [t.name for t in await lists.visible(decider, ALICE, CATALOG)] == ["a__one"]
    engine.answer = {"visible": ["a__two"]}  # the policy changed; the revision did not
    assert [t.name for t in await lists.visible(decider, ALICE, CATALOG)] == ["a__two"]
    assert len(engine.asked) == 2


async def test_the_catalog_revision_is_of_the_definitions_not_of_the_objects() -> None:
    """The catalog digest is kept per list of objects (their ids), but names what
    they say: a re-read catalog of equal definitions (new objects) is the same
    revision, a changed one another, however many lists were seen between."""
    engine = RecordingEngine({"visible": ["a__one"]})
    lists = VisibleTools()
    decider = decider_for(engine)
    await lists.visible(decider, ALICE, CATALOG)
    reread = [tool(t.name, t.risk) for t in CATALOG]
    assert reread[0] is not CATALOG[0]
    await lists.visible(decider, ALICE, reread)
    assert len(engine.asked) == 1
    for index in range(12):  # more lists than digests kept
        await lists.visible(decider, ALICE, [tool(f"c__t{index}")])
    assert len(engine.asked) == 13
    await lists.visible(decider, ALICE, [*CATALOG[:2], tool("b__three", risk="high")])
    assert len(engine.asked) == 14
    await lists.visible(decider, ALICE, CATALOG)
    assert len(engine.asked) == 14


@pytest.mark.parametrize(
    "answer",
    [
        PolicyError("policy evaluation failed: conflicting rules"),
        {"visible": "a__one"},
        {"shown": ["a__one"]},
        {"visible": [1]},
        None,
        RuntimeError("an engine bug"),
    ],
)
async def test_any_failure_shows_nothing_and_is_not_cached(answer: Any) -> None:
    engine = RecordingEngine(answer)
    lists = VisibleTools()
    decider = decider_for(engine)
    assert await lists.visible(decider, ALICE, CATALOG) == []
    assert await lists.visible(decider, ALICE, CATALOG) == []
    assert len(engine.asked) == 2


async def test_an_engine_that_gives_no_answer_is_unavailable_not_an_empty_list() -> None:
    engine = RecordingEngine(NoDecision("OPA at http://127.0.0.1:1 is unreachable"))
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        await VisibleTools().visible(decider_for(engine), ALICE, CATALOG)


async def test_a_policy_without_the_list_rule_is_reported_to_the_caller() -> None:
    # The pipeline then asks per tool, as it did before gateway/visible existed.
    engine = RecordingEngine(ListUnsupported("no gateway/visible"))
    with pytest.raises(ListUnsupported):
        await VisibleTools().visible(decider_for(engine), ALICE, CATALOG)
