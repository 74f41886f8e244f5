"""Scenario replay and capture (issue 17, part 4), on SQLite and PostgreSQL: a recorded
run replayed against the same workflow and policy shows no difference, against a
known edit exactly that edit; no upstream is called; a tampered recording is not
verified; a captured scenario fails against the broken workflow and passes against
the fix; an erased result is never used or captured."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
import yaml

from gateway.audit import AuditRecord
from gateway.audit.batch import WRITER_LOCK_KEY
from gateway.canonical import jcs, sha256_hex
from gateway.cli import main
from gateway.config import McpHttpUpstream
from gateway.erasure_scope import erase, scope_of_request, scope_of_run
from gateway.errors import UnknownTool
from gateway.executor.plan import parse_plan
from gateway.policy.embedded import EmbeddedEngine
from gateway.store import exclusive_transaction
from gateway.store.tables import audit_entries, audit_payloads, run_steps, step_attempts
from gateway.workflows.capture import capture_scenario
from gateway.workflows.errors import ScenariosFailed
from gateway.workflows.manifest import parse_manifest
from gateway.workflows.pinned_tools import pinned_tools
from gateway.workflows.recorded_run import Found, RecordingNotUsable, load_recorded_run
from gateway.workflows.replay import replay_run
from gateway.workflows.scenario import parse_scenario
from gateway.workflows.testing import check_plan, run_scenarios_with
from tests.integration.executor.harness import GRANTS
from tests.integration.workflows.harness import AUTHOR, WorkflowParts, workflow_parts
from tests.support.processes import McpUpstreamServer, write_policy

pytestmark = pytest.mark.anyio

PLAN = {
    "inputs": {"type": "object", "required": ["who"], "properties": {"who": {"type": "string"}}},
    "steps": [
        {"id": "hello", "tool": "up__echo", "arguments": {"text": "${{ inputs.who }}"}},
        {
            "id": "shout",
            "tool": "up__echo",
            "needs": ["hello"],
            "arguments": {"text": "${{ steps.hello.output.result }}!"},
        },
    ],
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstreamServer]:
    server = McpUpstreamServer.start(tmp_path_factory.mktemp("upstream"))
    yield server
    server.process.stop()


@pytest.fixture
async def wf(
    database_url: str, tmp_path: Path, upstream: McpUpstreamServer
) -> AsyncIterator[WorkflowParts]:
    async with workflow_parts(database_url, tmp_path, upstream.url) as parts:
        yield parts


async def _settled(wf: WorkflowParts) -> None:
    # Outcomes are queued, not awaited; an entry appended now lands after them.
    await wf.parts.audit.append(AuditRecord("test.barrier", "barrier", {}))


async def _run(wf: WorkflowParts, plan: dict[str, Any], inputs: dict[str, Any]) -> str:
    run_id = await wf.parts.submit(plan, inputs)
    await wf.parts.wait(run_id)
    await _settled(wf)
    return run_id


async def _replay(
    wf: WorkflowParts,
    run_id: str,
    plan: dict[str, Any] | None = None,
    engine: EmbeddedEngine | None = None,
    upstream_url: str = "http://unused.test/mcp",
) -> dict[str, Any]:
    recorded = load_recorded_run(wf.parts.database, run_id)
    decider = wf.parts.executor.deps.decider
    decide = decider.decide if engine is None else engine.evaluate
    configured = [McpHttpUpstream.model_validate({"name": "up", "url": upstream_url})]
    return await replay_run(
        recorded,
        parse_plan(plan or recorded.plan),
        recorded.workflow,
        decide,
        pinned_tools(wf.parts.database, configured),
        request_id="req_replay",
    )


async def test_the_same_workflow_and_policy_replay_without_difference_and_call_nothing(
    wf: WorkflowParts, upstream: McpUpstreamServer
) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    recorded = load_recorded_run(wf.parts.database, run_id)
    assert {s: r.found for s, r in recorded.steps.items()} == {
        "hello": Found.VERIFIED,
        "shout": Found.VERIFIED,
    }
    calls = len(upstream.calls())

    report = await _replay(wf, run_id)

    assert report["differences"] == {}
    assert report["unverified"] == []
    assert report["replayed"]["status"] == "succeeded"
    assert report["steps"]["shout"]["output"] == {"result": "ada!"}
    assert len(upstream.calls()) == calls  # nothing was called


async def test_a_policy_edit_is_reported_as_exactly_that_edit(
    wf: WorkflowParts, upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    calls = len(upstream.calls())
    # The candidate: the same grants, but up__echo now needs an approver's approval.
    grants = copy.deepcopy(GRANTS)
    for grant in grants:
        if grant["tool"] == "up__echo":
            grant["approval"] = {"approvers": ["role:approver"]}
    candidate = EmbeddedEngine(write_policy(tmp_path / "candidate", grants))

    report = await _replay(wf, run_id, engine=candidate)

    allowed = {"allow": True, "require_approval": False, "rule": "grant"}
    held = {"allow": True, "require_approval": True, "rule": "approval_grant"}
    change = {
        "decision": {"recorded": allowed, "replayed": held},
        "approval_needed": {"recorded": False, "replayed": True},
    }
    assert report["differences"] == {
        # The plan now calls a tool that needs approval: its submission says so too.
        "plan_submit": {
            "recorded": {"allow": True, "require_approval": False, "rule": "plan"},
            "replayed": {"allow": True, "require_approval": True, "rule": "plan_approval"},
        },
        "steps": {"changed": {"hello": change, "shout": change}},
    }
    assert report["replayed"]["status"] == "succeeded"
    assert len(upstream.calls()) == calls


async def test_a_workflow_edit_is_reported_as_that_edit_and_its_divergence(
    wf: WorkflowParts, upstream: McpUpstreamServer
) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    calls = len(upstream.calls())
    edited = copy.deepcopy(PLAN)
    edited["steps"][1]["arguments"]["text"] = "${{ steps.hello.output.result }}?"
    edited["steps"].append(
        {"id": "bye", "tool": "up__echo", "needs": ["shout"], "arguments": {"text": "bye"}}
    )

    report = await _replay(wf, run_id, plan=edited)

    shout = report["differences"]["steps"]["changed"]["shout"]
    assert shout == {
        "status": {"recorded": "succeeded", "replayed": "failed"},
        "arguments": {"recorded": {"text": "ada!"}, "replayed": {"text": "ada?"}},
        "output": {"recorded": {"result": "ada!"}, "replayed": None},
        "error": {"recorded": None, "replayed": "no_recording"},
    }
    assert report["differences"]["steps"]["added"] == ["bye"]
    assert "hello" not in report["differences"]["steps"]["changed"]
    message = report["steps"]["shout"]["error"]["message"]
    assert message == "diverged, no recording: the recorded call had other arguments"
    assert report["differences"]["status"]["replayed"]["status"] == "failed"
    assert len(upstream.calls()) == calls


async def test_a_tampered_recording_is_not_verified(wf: WorkflowParts) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    with exclusive_transaction(wf.parts.database, WRITER_LOCK_KEY) as conn:
        row = conn.execute(
            sa.select(run_steps.c.result).where(
                run_steps.c.run_id == run_id, run_steps.c.step_id == "hello"
            )
        ).one()
        forged = copy.deepcopy(row.result)
        forged["structured_content"] = {"result": "eve"}
        conn.execute(
            run_steps.update()
            .where(run_steps.c.run_id == run_id, run_steps.c.step_id == "hello")
            .values(result=forged, output={"result": "eve"})
        )

    report = await _replay(wf, run_id)

    assert report["unverified"] == ["hello"]
    assert report["recordings"]["hello"].startswith("not verified: the step's result does not hash")
    error = report["steps"]["hello"]["error"]
    assert error["code"] == "recording_not_verified"
    assert error["message"].startswith("recording not verified")
    assert report["steps"]["shout"] == {"status": "not_run", "output": None}
    with pytest.raises(RecordingNotUsable, match="recording not verified for step"):
        capture_scenario(load_recorded_run(wf.parts.database, run_id))


async def test_a_result_forged_with_its_audit_payload_is_not_verified(wf: WorkflowParts) -> None:
    """Someone with write access forges the step's result and the call.outcome payload's
    result_sha256 to match it (the payload row replaced: it cannot be updated): the
    leaf's commitment still names the original payload."""
    run_id = await _run(wf, PLAN, {"who": "ada"})
    forged_result = {
        "content": [{"type": "text", "text": "eve"}],
        "structured_content": {"result": "eve"},
        "is_error": False,
    }
    # Under the audit writer's lock, as a forger racing nobody would.
    with exclusive_transaction(wf.parts.database, WRITER_LOCK_KEY) as conn:
        request_id = conn.scalar(
            sa.select(step_attempts.c.request_id).where(
                step_attempts.c.run_id == run_id, step_attempts.c.step_id == "hello"
            )
        )
        seq = conn.scalar(
            sa.select(audit_entries.c.seq).where(
                audit_entries.c.ref == request_id, audit_entries.c.kind == "call.outcome"
            )
        )
        original = conn.execute(sa.select(audit_payloads).where(audit_payloads.c.seq == seq)).one()
        payload = json.loads(original.payload)
        payload["result_sha256"] = sha256_hex(forged_result)
        conn.execute(audit_payloads.delete().where(audit_payloads.c.seq == seq))
        conn.execute(
            audit_payloads.insert().values(
                seq=seq,
                salt=original.salt,
                payload=jcs(payload).decode(),
                subject=original.subject,
                tool=original.tool,
            )
        )
        conn.execute(
            run_steps.update()
            .where(run_steps.c.run_id == run_id, run_steps.c.step_id == "hello")
            .values(result=forged_result, output={"result": "eve"})
        )

    recorded = load_recorded_run(wf.parts.database, run_id)
    assert recorded.steps["hello"].found is Found.NOT_VERIFIED
    assert recorded.steps["hello"].why == f"audit entry #{seq} does not match its leaf's commitment"
    report = await _replay(wf, run_id)
    assert report["unverified"] == ["hello"]
    assert report["steps"]["hello"]["error"]["code"] == "recording_not_verified"


async def test_an_output_changed_alone_is_not_verified(wf: WorkflowParts) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    with exclusive_transaction(wf.parts.database, WRITER_LOCK_KEY) as conn:
        conn.execute(
            run_steps.update()
            .where(run_steps.c.run_id == run_id, run_steps.c.step_id == "shout")
            .values(output={"result": "changed"})
        )
    recorded = load_recorded_run(wf.parts.database, run_id)
    assert recorded.steps["shout"].found is Found.NOT_VERIFIED
    assert recorded.steps["hello"].found is Found.VERIFIED


async def test_an_erased_call_has_no_recording_and_is_never_captured(wf: WorkflowParts) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    with wf.parts.database.connect() as conn:
        request_id = conn.scalar(
            sa.select(step_attempts.c.request_id).where(
                step_attempts.c.run_id == run_id, step_attempts.c.step_id == "shout"
            )
        )
    erase(
        wf.parts.database,
        "test.gateway/audit",
        scope_of_request(wf.parts.database, request_id),
        "x",
    )

    recorded = load_recorded_run(wf.parts.database, run_id)
    assert recorded.steps["shout"].found is Found.NO_RECORDING
    assert recorded.steps["shout"].why == "erased"
    report = await _replay(wf, run_id)
    assert report["steps"]["shout"]["error"]["message"] == "diverged, no recording: erased"
    scenario = capture_scenario(recorded)
    assert "shout" not in scenario["results"]
    assert "no result for shout (erased)" in scenario["description"]
    assert "ada!" not in repr(scenario)

    # The whole run erased: nothing of it is replayed or captured.
    erase(wf.parts.database, "test.gateway/audit", scope_of_run(wf.parts.database, run_id), "x")
    with pytest.raises(RecordingNotUsable, match="was erased"):
        load_recorded_run(wf.parts.database, run_id)


def _workflow(wf: WorkflowParts, version: str, *, fixed: bool) -> dict[str, Any]:
    """Greets, then checks with a tool that always fails; the fix checks only when
    asked to (``inputs.strict``)."""
    check: dict[str, Any] = {"id": "check", "tool": "up__fail", "needs": ["hello"]}
    if fixed:
        check["when"] = "inputs.strict"
    return wf.manifest(
        version,
        inputs={
            "type": "object",
            "required": ["who"],
            "properties": {"who": {"type": "string"}, "strict": {"type": "boolean"}},
        },
        plan={"steps": [PLAN["steps"][0], check]},
        tools=wf.pins("up__echo", "up__fail"),
    )


async def test_a_captured_failure_fails_against_the_broken_workflow_and_passes_the_fix(
    wf: WorkflowParts, upstream: McpUpstreamServer
) -> None:
    broken = _workflow(wf, "1.0.0", fixed=False)
    published = await wf.publish(broken)
    assert published
    run_id, _ = await wf.workflows.submit_run(
        AUTHOR,
        "greeter@1.0.0",
        {"who": "ada"},
        idempotency_key=None,
        request_id="req_run",
        transport="rest",
    )
    view = await wf.parts.wait(run_id)
    assert view["status"] == "failed" and view["error"]["step"] == "check"
    await _settled(wf)
    calls = len(upstream.calls())

    scenario = capture_scenario(load_recorded_run(wf.parts.database, run_id))
    assert scenario["inputs"] == {"who": "ada"}
    assert scenario["results"]["hello"] == {"output": {"result": "ada"}}
    assert scenario["results"]["check"]["error"]["code"] == "tool_error"
    assert scenario["expect"] == {"status": "succeeded"}

    with_scenario = {**broken, "version": "1.0.1", "scenarios": {"captured": scenario}}
    results = await wf.workflows.test(AUTHOR, with_scenario, request_id="t")
    assert not results[0]["passed"]
    assert results[0]["mismatches"][0].startswith("the run failed")
    with pytest.raises(ScenariosFailed):
        await wf.publish(with_scenario)

    fixed = {**_workflow(wf, "1.0.1", fixed=True), "scenarios": {"captured": scenario}}
    assert (await wf.workflows.test(AUTHOR, fixed, request_id="t"))[0]["passed"]
    await wf.publish(fixed)

    # And the replay of the failed run against the fix: it would have succeeded.
    recorded = load_recorded_run(wf.parts.database, run_id)
    published_fix = wf.workflows.store.get("greeter", "1.0.1")
    report = await replay_run(
        recorded,
        published_fix.manifest.to_plan(),
        published_fix.manifest.to_ref().to_policy(),
        wf.parts.executor.deps.decider.decide,
        pinned_tools(wf.parts.database, []),
        request_id="req_replay",
    )
    assert report["replayed"]["status"] == "succeeded"
    assert report["differences"]["steps"]["changed"]["check"]["status"] == {
        "recorded": "failed",
        "replayed": "skipped",
    }
    assert report["replayed"]["workflow"]["version"] == "1.0.1"
    assert len(upstream.calls()) == calls


async def test_an_unfinished_or_unknown_run_is_not_replayed(wf: WorkflowParts) -> None:
    with pytest.raises(RecordingNotUsable, match="no run"):
        load_recorded_run(wf.parts.database, "run_nope")
    gate = {"steps": [{"id": "gate", "approval": {"approvers": ["role:approver"]}}]}
    run_id = await wf.parts.submit(gate)
    with pytest.raises(RecordingNotUsable, match="once it has finished"):
        load_recorded_run(wf.parts.database, run_id)


# --- the command line: `gateway runs replay|capture --config FILE` ----------------------


async def _cli(args: list[str]) -> int:
    # The commands run their own event loop, as from a shell.
    return await anyio.to_thread.run_sync(main, args)


def _config(wf: WorkflowParts, tmp_path: Path, database_url: str, upstream_url: str) -> Path:
    """A config naming the harness's database, policy and upstream (never contacted)."""
    path = tmp_path / "gateway.yaml"
    config = {
        "identity": {"issuers": [{"issuer": "https://issuer.test", "jwks_url": "http://x.test"}]},
        "storage": {"url": database_url},
        "policy": {"path": str(tmp_path / "policy"), "watch": False},
        "upstreams": [{"name": "up", "url": upstream_url}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def test_runs_replay_exits_as_policy_replay_does(
    wf: WorkflowParts,
    upstream: McpUpstreamServer,
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    config = str(_config(wf, tmp_path, database_url, upstream.url))
    calls = len(upstream.calls())

    assert (
        await _cli(["runs", "replay", run_id, "--config", config, "--fail-on", "difference"]) == 0
    )
    assert "no differences" in capsys.readouterr().out
    grants = copy.deepcopy(GRANTS)
    for grant in grants:
        if grant["tool"] == "up__echo":
            grant["approval"] = {"approvers": ["role:approver"]}
    candidate = str(write_policy(tmp_path / "candidate", grants))
    replay = ["runs", "replay", run_id, "--config", config, "--policy", candidate, "--json"]
    assert await _cli(replay) == 0  # differences, but no --fail-on
    document = json.loads(capsys.readouterr().out)
    assert set(document["differences"]["steps"]["changed"]) == {"hello", "shout"}
    assert await _cli([*replay, "--fail-on", "difference"]) == 1
    assert json.loads(capsys.readouterr().out)["failed"] is True
    assert await _cli([*replay, "--fail-on", "failure"]) == 0
    assert len(upstream.calls()) == calls


async def test_runs_capture_writes_a_scenario_once(
    wf: WorkflowParts,
    upstream: McpUpstreamServer,
    tmp_path: Path,
    database_url: str,
) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    config = str(_config(wf, tmp_path, database_url, upstream.url))
    calls = len(upstream.calls())

    out = tmp_path / "workflow"
    assert await _cli(["runs", "capture", run_id, "--config", config, "--out", str(out)]) == 0
    text = (out / "scenarios" / f"{run_id}.yaml").read_text()
    assert text.startswith(f"# Captured from run {run_id}")
    assert "outside the" in text and "erasure scope" in text
    scenario = parse_scenario("captured", yaml.safe_load(text))
    assert scenario.results["shout"].output == {"result": "ada!"}
    # Never overwritten.
    assert await _cli(["runs", "capture", run_id, "--config", config, "--out", str(out)]) == 2
    assert len(upstream.calls()) == calls


async def test_runs_replay_refuses_a_forged_recording_and_says_what_is_unknown(
    wf: WorkflowParts,
    upstream: McpUpstreamServer,
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = await _run(wf, PLAN, {"who": "ada"})
    config = str(_config(wf, tmp_path, database_url, upstream.url))
    calls = len(upstream.calls())

    with exclusive_transaction(wf.parts.database, WRITER_LOCK_KEY) as conn:
        conn.execute(
            run_steps.update()
            .where(run_steps.c.run_id == run_id, run_steps.c.step_id == "shout")
            .values(output={"result": "forged"})
        )
    capsys.readouterr()
    assert await _cli(["runs", "replay", run_id, "--config", config]) == 1
    assert "recording not verified: shout" in capsys.readouterr().out
    assert await _cli(["runs", "replay", "run_nope", "--config", config]) == 2
    assert "no run 'run_nope'" in capsys.readouterr().err
    assert await _cli(["runs", "replay", run_id, "--config", config, "--workflow", "nope@1"]) == 2
    assert len(upstream.calls()) == calls


async def test_scenarios_decided_here_with_a_candidate_policy_and_the_pinned_tools(
    wf: WorkflowParts, upstream: McpUpstreamServer, tmp_path: Path
) -> None:
    """`gateway workflows test --policy DIR`: the same scenarios, decided off the
    gateway by a candidate policy, with the tools as pinned in the database."""
    scenario = {
        "inputs": {"who": "ada"},
        "results": {"hello": {"output": {"result": "ada"}}},
        "expect": {"status": "succeeded", "steps": {"hello": "succeeded", "check": "skipped"}},
    }
    manifest = parse_manifest({**_workflow(wf, "2.0.0", fixed=True), "scenarios": {"s": scenario}})
    configured = [McpHttpUpstream.model_validate({"name": "up", "url": upstream.url})]
    tools = pinned_tools(wf.parts.database, configured)
    plan = check_plan(manifest, tools, max_steps=100)
    resources = tools.resources(plan.tools())
    assert resources["up__echo"]["definition_hash"] == wf.pins("up__echo")["up__echo"]
    calls = len(upstream.calls())

    same = EmbeddedEngine(write_policy(tmp_path / "same", GRANTS))
    passed = await run_scenarios_with(
        manifest, plan, resources, same.evaluate, AUTHOR, request_id="t"
    )
    assert passed[0]["passed"], passed[0]["mismatches"]

    without_echo = [g for g in GRANTS if g["tool"] != "up__echo"]
    candidate = EmbeddedEngine(write_policy(tmp_path / "candidate", without_echo))
    failed = await run_scenarios_with(
        manifest, plan, resources, candidate.evaluate, AUTHOR, request_id="t"
    )
    assert not failed[0]["passed"]
    assert len(upstream.calls()) == calls
    # A tool the database has no approved definition of is unknown here.
    with pytest.raises(UnknownTool):
        pinned_tools(wf.parts.database, []).resolve("up__echo")
