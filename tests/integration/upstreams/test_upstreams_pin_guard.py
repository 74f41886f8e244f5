"""`PinGuard` on a real database (SQLite and PostgreSQL): two guards stand for two
gateway processes sharing the pin table and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditLog, read_entries
from gateway.errors import (
    DefinitionNotPending,
    DefinitionQuarantined,
    PinConfigured,
    ToolQuarantined,
    UnknownTarget,
)
from gateway.types import Principal
from gateway.upstreams.pin_plan import Seen
from gateway.upstreams.pinning import PinGuard
from gateway.upstreams.pins import PinStatus, PinStore

pytestmark = pytest.mark.anyio

A, B = "a" * 64, "b" * 64
DOC_A = {"name": "echo", "description": "Returns the text."}
DOC_B = {"name": "echo", "description": "Now with a hidden instruction."}
REVIEWER = Principal(sub="user:reviewer", iss="test", roles=("approver",))


def echo(digest: str, document: dict[str, str]) -> Seen:
    return Seen("tool", "up__echo", "up", digest, document)


def tool(digest: str) -> tuple[str, str, str]:
    """What the catalog asks the guard about the tool: kind, name, live hash."""
    return ("tool", "up__echo", digest)


@pytest.fixture
async def audit(engine: Engine) -> AsyncIterator[AuditLog]:
    log = AuditLog(engine, "test/pins")
    await log.start()
    yield log
    await log.close()


def kinds(engine: Engine) -> list[str]:
    return [e.kind for e in read_entries(engine, tool="up__echo")]


async def test_first_sight_pins_once_however_many_processes_see_it(
    engine: Engine, audit: AuditLog
) -> None:
    one, two = (PinGuard(PinStore(engine), audit, configured={}) for _ in range(2))
    await one.check([echo(A, DOC_A)])
    await two.check([echo(A, DOC_A)])
    assert kinds(engine) == ["tool.pinned"]
    one.verify(*tool(A))
    two.verify(*tool(A))


async def test_drift_quarantines_everywhere_and_approval_releases_everywhere(
    engine: Engine, audit: AuditLog
) -> None:
    one, two = (PinGuard(PinStore(engine), audit, configured={}) for _ in range(2))
    for guard in (one, two):
        await guard.check([echo(A, DOC_A)])
    await one.check([echo(B, DOC_B)])
    await two.check([echo(B, DOC_B)])  # the same drift: no second change
    assert kinds(engine) == ["tool.pinned", "tool.drift"]
    for guard in (one, two):
        assert not guard.allows(*tool(B))
        with pytest.raises(ToolQuarantined) as refused:
            guard.verify(*tool(B))
        assert refused.value.code == "tool_quarantined" and refused.value.http_status == 409
        assert refused.value.details["old_hash"] == A

    version, rows = await one.describe(PinStatus.QUARANTINED)
    assert [r["tool"] for r in rows] == ["up__echo"] and version == rows[0]["version"]
    with pytest.raises(DefinitionNotPending):
        await one.approve("tool", "up__echo", REVIEWER, A)
    approved = await one.approve("tool", "up__echo", REVIEWER, B)
    assert approved["status"] == "pinned" and approved["approved_by"] == "user:reviewer"
    one.verify(*tool(B))  # at once in the approving process
    assert not two.allows(*tool(B))
    await two.sync()  # the other process: on its next look at the table's version
    two.verify(*tool(B))
    entries = read_entries(engine, tool="up__echo")
    assert [e.kind for e in entries] == ["tool.pinned", "tool.drift", "tool.pinned"]
    assert entries[-1].payload is not None
    assert entries[-1].payload["approved_by"] == "user:reviewer"
    assert entries[-1].subject == "user:reviewer"
    with pytest.raises(DefinitionNotPending):
        await one.approve("tool", "up__echo", REVIEWER, None)  # approved already


async def test_tool_pinned_in_config_is_approved_only_by_config(
    engine: Engine, audit: AuditLog
) -> None:
    guard = PinGuard(PinStore(engine), audit, configured={"up__echo": A})
    await guard.check([echo(B, DOC_B)])
    assert not guard.allows(*tool(B))
    with pytest.raises(PinConfigured):
        await guard.approve("tool", "up__echo", REVIEWER, B)
    released = PinGuard(PinStore(engine), audit, configured={"up__echo": B})
    await released.check([echo(B, DOC_B)])
    released.verify(*tool(B))
    with pytest.raises(UnknownTarget):
        await released.approve("tool", "up__other", REVIEWER, None)


async def test_unchecked_tool_is_refused(engine: Engine, audit: AuditLog) -> None:
    guard = PinGuard(PinStore(engine), audit, configured={})
    with pytest.raises(ToolQuarantined, match="not been checked"):
        guard.verify(*tool(A))


PROMPT_A, PROMPT_B = {"name": "greet", "description": "Greets"}, {"name": "greet", "x": 1}
README = "gateway:up/file:///readme.md"


def offerings(digest: str) -> list[Seen]:
    """A prompt, a resource and a template of upstream ``up``, all at ``digest``."""
    document = PROMPT_A if digest == A else PROMPT_B
    return [
        Seen("prompt", "up__greet", "up", digest, document),
        Seen("resource", README, "up", digest, {**document, "uri": "file:///readme.md"}),
        Seen("resource_template", "gateway:up/f/{x}", "up", digest, {**document, "t": 1}),
    ]


async def test_prompts_and_resources_are_pinned_and_quarantined_like_tools(
    engine: Engine, audit: AuditLog
) -> None:
    guard = PinGuard(PinStore(engine), audit, configured={})
    await guard.check(offerings(A))
    guard.verify("prompt", "up__greet", A)
    await guard.check(offerings(B))
    assert not guard.allows("resource", README, B)
    with pytest.raises(DefinitionQuarantined) as refused:
        guard.verify("prompt", "up__greet", B)
    assert refused.value.code == "definition_quarantined"
    assert refused.value.details["kind"] == "prompt"
    drifts = [e for e in read_entries(engine, kind="definition.drift")]
    assert sorted(e.payload["kind"] for e in drifts if e.payload) == [
        "prompt",
        "resource",
        "resource_template",
    ]
    _, rows = await guard.describe(PinStatus.QUARANTINED, kind="prompt")
    assert [(r["kind"], r["name"], r["upstream"]) for r in rows] == [("prompt", "up__greet", "up")]


async def test_one_upstreams_pending_definitions_are_approved_at_once(
    engine: Engine, audit: AuditLog
) -> None:
    one, two = (PinGuard(PinStore(engine), audit, configured={}) for _ in range(2))
    for guard in (one, two):
        await guard.check(
            [*offerings(A), echo(A, DOC_A), Seen("prompt", "other__p", "other", A, {})]
        )
        await guard.check(
            [*offerings(B), echo(B, DOC_B), Seen("prompt", "other__p", "other", B, {})]
        )
    _, pending = await one.describe(PinStatus.QUARANTINED, upstream="up")
    assert len(pending) == 4
    reviewed = {(r["kind"], r["name"]): r["pending_hash"] for r in pending}

    stale = {**reviewed, ("prompt", "up__greet"): A}  # not what is pending
    with pytest.raises(DefinitionNotPending):
        await one.approve_upstream("up", REVIEWER, stale)
    assert not one.allows("prompt", "up__greet", B)  # nothing was approved
    assert read_entries(engine, kind="definition.pinned", subject="user:reviewer") == []

    released = await one.approve_upstream("up", REVIEWER, reviewed)
    assert {r["name"] for r in released} == {README, "gateway:up/f/{x}", "up__echo", "up__greet"}
    for kind, name in reviewed:
        one.verify(kind, name, B)
    assert not one.allows("prompt", "other__p", B)  # another upstream's: still pending
    await two.sync()
    two.verify("resource", README, B)
    approvals = [
        e
        for e in read_entries(engine, subject="user:reviewer")
        if e.payload is not None and e.payload.get("source") == "approval"
    ]
    assert len(approvals) == 4
    assert all(e.payload is not None and e.payload["upstream_wide"] is True for e in approvals)
    assert {e.kind for e in approvals} == {"tool.pinned", "definition.pinned"}
    assert await one.approve_upstream("up", REVIEWER) == []  # nothing pending any more
