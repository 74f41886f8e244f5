"""The pipeline's security invariants with real components in one process: a real
HTTP upstream process, the embedded Rego engine, the audit log on SQLite."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from sqlalchemy import Engine

from gateway.approvals.disabled import DisabledApprovals
from gateway.audit import AuditLog, AuditRecord, read_entries
from gateway.audit.export import database_source
from gateway.config import HttpUpstream
from gateway.errors import (
    AuditCommitUnknown,
    AuditUnavailable,
    PolicyUnavailable,
    UpstreamResultRefused,
)
from gateway.limits import Limiter, LimitStore
from gateway.operations import Operation
from gateway.pipeline import Pipeline
from gateway.policy.decider import Decider, DecisionQueue
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import FAIL_CLOSED_RULE
from gateway.recording import WITHHELD
from gateway.store import create_engine, migrate
from gateway.store.shared_clock import SharedClock
from gateway.tlog.verifier import verify_log
from gateway.types import UNAVAILABLE_RULE, OutcomeStatus, Principal
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.http_api import HttpApiUpstream
from gateway.upstreams.pinning import PinGuard
from gateway.upstreams.pins import PinStore
from tests.support.deciding import decider_for
from tests.support.engines import GatedEngine
from tests.support.fixture_policy import write_fixture_policy
from tests.support.processes import HttpApiServer, write_policy

pytestmark = pytest.mark.anyio

AGENT = Principal(sub="agent:x", iss="test", roles=("agent",))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpApiServer]:
    server = HttpApiServer.start(tmp_path_factory.mktemp("api"))
    yield server
    server.process.stop()


def _bindings(api: HttpApiServer) -> list[Binding]:
    config = HttpUpstream.model_validate(
        {
            "name": "api",
            "kind": "http",
            "base_url": api.url,
            "tools": [
                {
                    "name": "create",
                    "method": "POST",
                    "path": "/items",
                    "input_schema": {"type": "object"},
                },
                # Results nested 20 and 600 lists deep (tests/support/http_api.py).
                {"name": "shallow", "method": "GET", "path": "/nested/20"},
                {"name": "deep", "method": "GET", "path": "/nested/600"},
            ],
        }
    )
    credentials = CredentialProvider(
        "api", config.credentials, default_audience=api.url, mint=lambda *a: ""
    )
    client = HttpApiUpstream(config, static_headers={}, connect_timeout_s=5)
    return [Binding(client=client, config=config, credentials=credentials)]


@asynccontextmanager
async def assembled(
    tmp_path: Path, api: HttpApiServer, audit_log: type[AuditLog] = AuditLog
) -> AsyncIterator[tuple[Pipeline, AuditLog, Engine]]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = audit_log(database, "test/audit")
    await audit.start()
    policy = EmbeddedEngine(write_policy(tmp_path, [{"role": "agent", "tool": "api__*"}]))
    pins = PinGuard(PinStore(database), audit, configured={})
    catalog = Catalog(_bindings(api), pins=pins, pin_sync_interval_s=0)
    async with anyio.create_task_group() as tasks:
        await catalog.connect(tasks)
        await catalog.start(tasks, refresh_interval_s=0)
        pipeline = Pipeline(
            catalog=catalog,
            decider=decider_for(policy, 2),
            audit=audit,
            approvals=DisabledApprovals(),
            limiter=Limiter(LimitStore(database), SharedClock(database), lease_s=60),
        )
        yield pipeline, audit, database
        await catalog.close()
        tasks.cancel_scope.cancel()
    await audit.close()
    database.dispose()


@pytest.fixture
async def parts(
    tmp_path: Path, api: HttpApiServer
) -> AsyncIterator[tuple[Pipeline, AuditLog, Engine]]:
    async with assembled(tmp_path, api) as parts:
        yield parts


def _call(arguments: dict, tool: str = "api__create") -> Operation:
    return Operation(
        principal=AGENT,
        method="tools/call",
        target=tool,
        arguments=arguments,
        transport="rest",
        request_id=f"req_{abs(hash(json.dumps([tool, arguments]))):x}",
    )


async def test_allowed_call_is_forwarded_after_its_records(parts, api: HttpApiServer) -> None:
    pipeline, _audit, _database = parts
    outcome = await pipeline.call(_call({"name": "first"}))
    assert outcome.status is OutcomeStatus.OK
    assert [c["json"] for c in api.calls()][-1] == {"name": "first"}


async def test_no_forward_without_a_durable_audit_record(parts, api: HttpApiServer) -> None:
    pipeline, audit, _database = parts
    before = len(api.calls())
    await audit.close()  # the log can no longer commit anything
    outcome = await pipeline.call(_call({"name": "unrecorded"}))
    assert outcome.status is OutcomeStatus.ERROR
    assert isinstance(outcome.error, AuditUnavailable)
    assert outcome.decision is not None and outcome.decision.allow  # policy said yes...
    assert len(api.calls()) == before  # ...and still nothing was forwarded


class CommitCutOff(AuditLog):
    """A test double of a database crash during COMMIT: the first call's attempt and
    decision are committed, and then their caller is told the commit's fate is unknown
    (`AuditCommitUnknown`)."""

    cut = False

    async def append(self, *records: AuditRecord) -> list[int]:
        if self.cut or records[0].kind != "call.attempt":
            return await super().append(*records)
        self.cut = True
        await super().append(*records)
        raise AuditCommitUnknown("audit log unavailable: the connection broke during COMMIT")


async def test_a_call_whose_commit_was_cut_off_is_logged_as_not_forwarded(
    tmp_path: Path, api: HttpApiServer
) -> None:
    """The database kept the attempt and the allowing decision although the gateway
    could not know it: the call is not forwarded, and the log says so (an outcome,
    written with the next commit), instead of an allowed call with an unknown outcome."""
    before = len(api.calls())
    async with assembled(tmp_path, api, CommitCutOff) as (pipeline, audit, database):
        call = _call({"name": "cut off"})
        outcome = await pipeline.call(call)
        assert outcome.status is OutcomeStatus.ERROR
        assert isinstance(outcome.error, AuditCommitUnknown)
        assert len(api.calls()) == before  # not forwarded
        await pipeline.call(_call({"name": "next"}))  # the kept outcome rides with it
        await audit.close()  # and whatever still lingers is written
        entries = [e for e in read_entries(database) if e.ref == call.request_id]
        assert [e.kind for e in entries] == ["call.attempt", "call.decision", "call.outcome"]
        logged = entries[2].payload
        assert logged is not None
        assert logged["forwarded"] is False and logged["status"] == "error"
        assert logged["error"]["code"] == "audit_unavailable"
        report = verify_log(database_source(database))
        assert not report.faults and not report.outcome_unknown


async def test_policy_failure_denies_and_withholds_arguments(
    parts, api: HttpApiServer, tmp_path: Path
) -> None:
    pipeline, _audit, database = parts
    broken = tmp_path / "broken"
    (broken / "gateway").mkdir(parents=True)
    (broken / "gateway" / "decision.rego").write_text(
        "package gateway\nimport rego.v1\n"
        'decision := {"allow": to_number(input.arguments.name) > 0}\n'
    )
    pipeline.decider = decider_for(EmbeddedEngine(broken), 2)
    before = len(api.calls())
    outcome = await pipeline.call(_call({"name": "not a number", "secret": "s3"}))
    assert outcome.status is OutcomeStatus.DENIED
    assert outcome.decision is not None and outcome.decision.rule == FAIL_CLOSED_RULE
    assert "fail closed" in outcome.decision.reasons[0]
    assert len(api.calls()) == before
    attempt, decision = read_entries(database, ref=outcome.request_id)
    assert attempt.payload["arguments"] == WITHHELD
    assert "s3" not in json.dumps([attempt.payload, decision.payload])


async def test_a_result_nested_too_deep_is_an_error_not_a_crash(parts) -> None:
    pipeline, audit, database = parts
    shallow = await pipeline.call(_call({}, "api__shallow"))
    assert shallow.status is OutcomeStatus.OK
    deep = await pipeline.call(_call({}, "api__deep"))
    assert deep.status is OutcomeStatus.ERROR
    assert isinstance(deep.error, UpstreamResultRefused)
    assert "nested more than 128 levels" in deep.error.message
    # The outcome is queued, not awaited (decision 0005): closing the log writes it.
    await audit.close()
    *_, outcome = read_entries(database, ref=deep.request_id)
    assert outcome.kind == "call.outcome"
    assert outcome.payload is not None
    assert outcome.payload["error"]["code"] == "upstream_result_refused"
    assert "result_sha256" not in outcome.payload


async def test_an_overloaded_engine_is_unavailable_audited_and_nothing_is_forwarded(
    parts, api: HttpApiServer
) -> None:
    pipeline, _audit, database = parts
    engine = GatedEngine()
    pipeline.decider = Decider(
        engine, timeout_s=30, queue=DecisionQueue(concurrency=1, size=0, wait_s=30)
    )
    before = len(api.calls())
    async with anyio.create_task_group() as tasks:
        first: list = []

        async def held() -> None:
            first.append(await pipeline.call(_call({"name": "held"})))

        tasks.start_soon(held)
        await engine.one_started.wait()
        refused = await pipeline.call(_call({"name": "refused", "secret": "s3"}))
        engine.release.set()
    assert refused.status is OutcomeStatus.ERROR
    assert isinstance(refused.error, PolicyUnavailable)
    assert refused.error.http_status == 503
    assert refused.decision is not None and refused.decision.rule == UNAVAILABLE_RULE
    assert first[0].status is OutcomeStatus.OK  # the held one was decided and ran
    assert [c["json"]["name"] for c in api.calls()[before:]] == ["held"]
    attempt, decided = read_entries(database, ref=refused.request_id)
    assert (attempt.kind, decided.kind) == ("call.attempt", "call.decision")
    assert decided.payload["decision"]["rule"] == UNAVAILABLE_RULE
    assert decided.payload["input"] is None
    assert attempt.payload["arguments"] == WITHHELD  # no decision said what to redact


async def test_a_list_is_one_decision_and_a_policy_without_the_list_rule_is_asked_per_tool(
    parts, tmp_path: Path
) -> None:
    pipeline, _audit, _database = parts
    names = ["api__create", "api__deep", "api__shallow"]

    async def listed() -> list[str]:
        tools = await pipeline.lists.tools(AGENT, transport="rest", request_id="req_list")
        return sorted(t.name for t in tools)

    assert await listed() == names  # the shipped policy's data.gateway.visible
    # The fixture policy predates data.gateway.visible: every tool is asked about.
    older = write_fixture_policy(tmp_path / "older", [{"role": "agent", "tool": "api__create"}])
    pipeline.decider = pipeline.lists.decider = decider_for(EmbeddedEngine(older), 2)
    assert "gateway/visible" not in pipeline.decider.engine.compiled.entrypoints
    assert await listed() == ["api__create"]
