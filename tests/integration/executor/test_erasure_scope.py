"""Erasure by request and by run (gateway.erasure_scope), on SQLite and PostgreSQL:
every table that held a copy of the call's values holds none afterwards, the log
still verifies, and an erased approved call is never run again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.approvals.errors import OutcomeErased
from gateway.audit import AuditRecord
from gateway.audit.erasure import ErasureRefused
from gateway.audit.export import database_source
from gateway.erasure_scope import erase, scope_of_request, scope_of_run
from gateway.executor.held_calls import hold_as_run
from gateway.executor.records import new_run_id
from gateway.operations import Operation
from gateway.store.tables import metadata, run_steps
from gateway.tlog.verifier import verify_log
from gateway.types import OutcomeStatus
from tests.integration.executor.harness import AGENT, APPROVER, Parts, executor_parts
from tests.support.processes import McpUpstreamServer

pytestmark = pytest.mark.anyio

ORIGIN = "test.gateway/audit"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


@pytest.fixture
async def parts(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> AsyncIterator[Parts]:
    async with executor_parts(database_url, tmp_path, upstream.url, workers=1) as parts:
        yield parts


def tables_holding(parts: Parts, secret: str) -> list[str]:
    """Every table (of the whole schema) with a row whose text shows ``secret``."""
    found = []
    with parts.database.connect() as conn:
        for table in metadata.sorted_tables:
            if any(secret in repr(tuple(row)) for row in conn.execute(sa.select(table))):
                found.append(table.name)
    return found


async def settled(parts: Parts) -> None:
    # Outcomes and run events are queued, not awaited; the queue is the chain's order,
    # so once an entry appended now is in, everything queued before it is too.
    await parts.audit.append(AuditRecord("test.barrier", "barrier", {}))


def step_results(parts: Parts, run_id: str) -> list:
    with parts.database.connect() as conn:
        return list(
            conn.scalars(
                sa.select(run_steps.c.result)
                .where(run_steps.c.run_id == run_id)
                .order_by(run_steps.c.step_id)
            )
        )


def call(tool: str, arguments: dict, request_id: str) -> Operation:
    return Operation(
        principal=AGENT,
        method="tools/call",
        target=tool,
        arguments=arguments,
        transport="rest",
        request_id=request_id,
        hold_s=0,
    )


async def test_erasing_a_request_removes_every_copy_and_the_call_never_runs_again(
    parts: Parts, upstream: McpUpstreamServer
):
    secret = "SECRET-request-7f3a"
    arguments = {"key": "erase-me", "value": secret}
    pipeline = parts.executor.deps.pipeline
    held = await pipeline.call(call("up__write", arguments, "req_first"))
    assert held.status is OutcomeStatus.PENDING_APPROVAL
    await parts.approvals.decide(
        held.approval_id, APPROVER, approve=True, reason=f"ok for {secret}", channel="rest"
    )
    ran = await pipeline.call(call("up__write", arguments, "req_retry"))
    assert ran.status is OutcomeStatus.OK
    await settled(parts)
    assert "audit_payloads" in tables_holding(parts, secret)
    assert "approvals" in tables_holding(parts, secret)

    scope = scope_of_request(parts.database, "req_first")
    # The approval it asked for, and the retry that executed it.
    assert scope.requests == {"req_first", "req_retry"}
    report = erase(parts.database, ORIGIN, scope, "ticket DSR-1")
    assert report.erased and report.rows["approvals"] == 1
    assert tables_holding(parts, secret) == []
    assert verify_log(database_source(parts.database)).ok

    writes_before = len([c for c in upstream.calls() if c["tool"] == "write"])
    again = await pipeline.call(call("up__write", arguments, "req_again"))
    assert isinstance(again.error, OutcomeErased) and again.replay_of == "req_retry"
    assert len([c for c in upstream.calls() if c["tool"] == "write"]) == writes_before
    # Erasing again changes nothing and says so.
    assert (
        erase(parts.database, ORIGIN, scope_of_request(parts.database, "req_first"), "x").erased
        == []
    )


async def test_erasing_a_run_removes_its_plan_values_inputs_steps_and_calls(parts: Parts):
    secret = "SECRET-run-91c2"
    plan = {
        "inputs": {"type": "object"},
        "steps": [
            {"id": "a", "tool": "up__echo", "arguments": {"text": "${{ inputs.who }}"}},
            {"id": "b", "tool": "up__echo", "needs": ["a"], "arguments": {"text": "b"}},
        ],
    }
    run_id = await parts.submit(plan, {"who": secret})
    assert (await parts.wait(run_id))["status"] == "succeeded"
    await settled(parts)
    holding = tables_holding(parts, secret)
    assert {"runs", "run_steps", "audit_payloads"} <= set(holding)
    # The tool's result document, kept for replay (docs/decisions/0029), is a copy too.
    assert secret in repr(step_results(parts, run_id))

    report = erase(parts.database, ORIGIN, scope_of_run(parts.database, run_id), "ticket DSR-2")
    assert report.rows["runs"] == 1 and report.rows["run_steps"] == 2
    assert tables_holding(parts, secret) == []
    assert step_results(parts, run_id) == [None, None]
    assert verify_log(database_source(parts.database)).ok
    view = await parts.executor.get(run_id, None)
    assert view["status"] == "succeeded" and view["inputs"] == "[erased]"


async def test_an_active_run_or_an_unknown_id_is_not_erased(parts: Parts):
    plan = {"steps": [{"id": "gate", "approval": {"approvers": ["role:approver"]}}]}
    run_id = await parts.submit(plan)
    with pytest.raises(ErasureRefused, match="erase it once it has finished"):
        scope_of_run(parts.database, run_id)
    with pytest.raises(ErasureRefused, match="no run"):
        scope_of_run(parts.database, "run_nope")
    with pytest.raises(ErasureRefused, match="no audit entry names request"):
        scope_of_request(parts.database, "req_nope")


async def test_erasing_a_held_call_answered_as_a_task_erases_the_run_that_ran_it(parts: Parts):
    secret = "SECRET-held-" + uuid.uuid4().hex
    held = call("up__write", {"key": "k", "value": secret}, "req_held_" + uuid.uuid4().hex)
    outcome = await parts.executor.deps.pipeline.call(held)
    assert outcome.status is OutcomeStatus.PENDING_APPROVAL and outcome.decision is not None
    approval = await parts.approvals.get_fresh(outcome.approval_id or "")
    run_id = await hold_as_run(
        parts.executor,
        held,
        outcome.decision,
        approval,
        definition_hash=approval.definition_hash or "",
        task_id="tsk_erasure",
        run_id=new_run_id(),
    )
    with pytest.raises(ErasureRefused):  # still waiting: not erased yet
        scope_of_request(parts.database, held.request_id)
    await parts.approvals.decide(approval.id, APPROVER, approve=True, reason=None, channel="rest")
    assert (await parts.wait(run_id))["status"] == "succeeded"
    await settled(parts)
    assert "runs" in tables_holding(parts, secret)

    scope = scope_of_request(parts.database, held.request_id)
    assert run_id in scope.runs
    erase(parts.database, ORIGIN, scope, "data subject request")
    assert tables_holding(parts, secret) == []
    assert verify_log(database_source(parts.database)).ok
