"""`PinGuard` on a real database (SQLite and PostgreSQL): two guards stand for two
gateway processes sharing the pin table and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditLog, read_entries
from gateway.errors import DefinitionNotPending, PinConfigured, ToolQuarantined, UnknownTool
from gateway.types import Principal, ToolDefinition
from gateway.upstreams.pinning import PinGuard, Seen
from gateway.upstreams.pins import PinStatus, PinStore

pytestmark = pytest.mark.anyio

A, B = "a" * 64, "b" * 64
DOC_A = {"name": "echo", "description": "Returns the text."}
DOC_B = {"name": "echo", "description": "Now with a hidden instruction."}
REVIEWER = Principal(sub="user:reviewer", iss="test", roles=("approver",))


def tool(digest: str) -> ToolDefinition:
    return ToolDefinition(
        name="up__echo",
        server="up",
        upstream_tool="echo",
        description=None,
        input_schema={},
        output_schema=None,
        annotations={},
        risk="low",
        definition_hash=digest,
    )


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
    await one.check([Seen("up__echo", A, DOC_A)])
    await two.check([Seen("up__echo", A, DOC_A)])
    assert kinds(engine) == ["tool.pinned"]
    one.verify(tool(A))
    two.verify(tool(A))


async def test_drift_quarantines_everywhere_and_approval_releases_everywhere(
    engine: Engine, audit: AuditLog
) -> None:
    one, two = (PinGuard(PinStore(engine), audit, configured={}) for _ in range(2))
    for guard in (one, two):
        await guard.check([Seen("up__echo", A, DOC_A)])
    await one.check([Seen("up__echo", B, DOC_B)])
    await two.check([Seen("up__echo", B, DOC_B)])  # the same drift: no second change
    assert kinds(engine) == ["tool.pinned", "tool.drift"]
    for guard in (one, two):
        assert not guard.allows(tool(B))
        with pytest.raises(ToolQuarantined) as refused:
            guard.verify(tool(B))
        assert refused.value.code == "tool_quarantined" and refused.value.http_status == 409
        assert refused.value.details["old_hash"] == A

    version, rows = await one.describe(PinStatus.QUARANTINED)
    assert [r["tool"] for r in rows] == ["up__echo"] and version == rows[0]["version"]
    with pytest.raises(DefinitionNotPending):
        await one.approve("up__echo", REVIEWER, A)
    approved = await one.approve("up__echo", REVIEWER, B)
    assert approved["status"] == "pinned" and approved["approved_by"] == "user:reviewer"
    one.verify(tool(B))  # at once in the approving process
    assert not two.allows(tool(B))
    await two.sync()  # the other process: on its next look at the table's version
    two.verify(tool(B))
    entries = read_entries(engine, tool="up__echo")
    assert [e.kind for e in entries] == ["tool.pinned", "tool.drift", "tool.pinned"]
    assert entries[-1].payload is not None
    assert entries[-1].payload["approved_by"] == "user:reviewer"
    assert entries[-1].subject == "user:reviewer"
    with pytest.raises(DefinitionNotPending):
        await one.approve("up__echo", REVIEWER, None)  # approved already


async def test_tool_pinned_in_config_is_approved_only_by_config(
    engine: Engine, audit: AuditLog
) -> None:
    guard = PinGuard(PinStore(engine), audit, configured={"up__echo": A})
    await guard.check([Seen("up__echo", B, DOC_B)])
    assert not guard.allows(tool(B))
    with pytest.raises(PinConfigured):
        await guard.approve("up__echo", REVIEWER, B)
    released = PinGuard(PinStore(engine), audit, configured={"up__echo": B})
    await released.check([Seen("up__echo", B, DOC_B)])
    released.verify(tool(B))
    with pytest.raises(UnknownTool):
        await released.approve("up__other", REVIEWER, None)


async def test_unchecked_tool_is_refused(engine: Engine, audit: AuditLog) -> None:
    guard = PinGuard(PinStore(engine), audit, configured={})
    with pytest.raises(ToolQuarantined, match="not been checked"):
        guard.verify(tool(A))
