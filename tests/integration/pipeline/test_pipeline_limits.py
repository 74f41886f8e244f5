"""Limits in the one call pipeline, with real components in one process (a real HTTP
upstream process, the embedded Rego engine with the shipped rules, SQLite) and time
moved by hand: a call over a limit is not forwarded and leaves ``call.limited``; a
call whose counters cannot be reached is refused as unavailable, never forwarded
uncounted; a concurrency slot is freed when its call ends, however it ended."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.approvals.disabled import DisabledApprovals
from gateway.audit import AuditLog, read_entries
from gateway.config import HttpUpstream
from gateway.errors import CallLimited, LimitsUnavailable
from gateway.limits import Limiter, LimitStore
from gateway.operations import Operation
from gateway.pipeline import Pipeline
from gateway.policy.embedded import EmbeddedEngine
from gateway.store import create_engine, migrate
from gateway.store.tables import limit_slots
from gateway.types import OutcomeStatus, Principal
from gateway.upstreams.catalog import Binding, Catalog
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.http_api import HttpApiUpstream
from gateway.upstreams.pinning import PinGuard
from gateway.upstreams.pins import PinStore
from tests.support.clock import FakeClock
from tests.support.deciding import decider_for
from tests.support.processes import HttpApiServer, write_policy
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

AGENT = Principal(sub="agent:x", iss="test", roles=("agent",))
LIMITS = [
    {
        "name": "create-per-agent",
        "per": ["principal"],
        "tools": ["api__create"],
        "calls": 2,
        "window_s": 60,
    },
    {"name": "one-at-a-time", "per": ["tool"], "tools": ["api__fail"], "concurrent": 1},
]


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
                {"name": "create", "method": "POST", "path": "/items"},
                # No such route: the upstream answers an error.
                {"name": "fail", "method": "GET", "path": "/no-such-route"},
                {"name": "plain", "method": "GET", "path": "/nested/20"},  # no limits
            ],
        }
    )
    credentials = CredentialProvider(
        "api", config.credentials, default_audience=api.url, mint=lambda *a: ""
    )
    client = HttpApiUpstream(config, static_headers={}, connect_timeout_s=5)
    return [Binding(client=client, config=config, credentials=credentials)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_000_020.0)  # the start of a minute window


async def _pipeline(
    tmp_path: Path, api: HttpApiServer, limiter_for: Any
) -> AsyncIterator[tuple[Pipeline, AuditLog, Engine]]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = AuditLog(database, "test.gateway/audit")
    await audit.start()
    policy = EmbeddedEngine(
        write_policy(tmp_path, [{"role": "agent", "tool": "api__*"}], limits=LIMITS)
    )
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
            limiter=limiter_for(database),
        )
        yield pipeline, audit, database
        await catalog.close()
        tasks.cancel_scope.cancel()
    await audit.close()
    database.dispose()


@pytest.fixture
async def parts(
    tmp_path: Path, api: HttpApiServer, clock: FakeClock
) -> AsyncIterator[tuple[Pipeline, AuditLog, Engine]]:
    async for made in _pipeline(
        tmp_path, api, lambda database: Limiter(LimitStore(database), clock, lease_s=60)
    ):
        yield made


async def _entries(database: Engine, ref: str, kind: str) -> list[Any] | None:
    return read_entries(database, ref=ref, kind=kind) or None


def _call(request_id: str, tool: str = "api__create", **arguments: Any) -> Operation:
    return Operation(
        principal=AGENT,
        method="tools/call",
        target=tool,
        arguments=arguments,
        transport="rest",
        request_id=request_id,
    )


async def test_a_call_over_its_limit_is_not_forwarded_and_is_audited(
    parts, api: HttpApiServer, clock: FakeClock
) -> None:
    pipeline, _audit, database = parts
    for n in range(2):
        assert (await pipeline.call(_call(f"req_ok{n}", name=f"n{n}"))).status is OutcomeStatus.OK
    before = len(api.calls())
    outcome = await pipeline.call(_call("req_over", name="over"))
    assert outcome.status is OutcomeStatus.ERROR and isinstance(outcome.error, CallLimited)
    assert outcome.error.retry_after_s == 60
    assert outcome.decision is not None and outcome.decision.allow
    assert len(api.calls()) == before
    entries = read_entries(database, ref="req_over")
    assert [e.kind for e in entries] == ["call.attempt", "call.decision", "call.limited"]
    assert entries[2].payload is not None and entries[2].payload["limit"] == "create-per-agent"
    clock.advance(60)  # the next window
    assert (await pipeline.call(_call("req_next", name="next"))).status is OutcomeStatus.OK


async def test_a_slot_is_freed_when_its_call_ends_even_in_error(parts, api: HttpApiServer) -> None:
    pipeline, _audit, database = parts
    for n in range(3):  # one slot: each call frees it for the next
        outcome = await pipeline.call(_call(f"req_fail{n}", tool="api__fail"))
        # Forwarded (not limited): the upstream's 404 is the tool's own error.
        assert outcome.status is OutcomeStatus.OK and outcome.result is not None
        assert outcome.result.is_error
    with database.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(limit_slots)) == 0


async def test_unreachable_counters_refuse_the_call_as_unavailable(
    tmp_path: Path, api: HttpApiServer, clock: FakeClock
) -> None:
    unmigrated = create_engine(f"sqlite:///{tmp_path / 'no-limit-tables.db'}")
    async for pipeline, _audit, database in _pipeline(
        tmp_path, api, lambda _database: Limiter(LimitStore(unmigrated), clock, lease_s=60)
    ):
        before = len(api.calls())
        outcome = await pipeline.call(_call("req_unavailable", name="x"))
        assert outcome.status is OutcomeStatus.ERROR
        assert isinstance(outcome.error, LimitsUnavailable)
        assert outcome.error.http_status == 503
        assert len(api.calls()) == before  # never forwarded uncounted
        # A tool whose decision carries no limits is not affected.
        free = await pipeline.call(_call("req_free", tool="api__plain"))
        assert free.status is OutcomeStatus.OK and free.decision is not None
        assert not free.decision.obligations.limits

        # Queued, not awaited, like every outcome (decision 0005).
        (outcome_entry,) = await eventually_async(
            partial(_entries, database, "req_unavailable", "call.outcome"),
            "the outcome of the refused call",
        )
        assert outcome_entry.payload is not None
        assert outcome_entry.payload["error"]["code"] == "limits_unavailable"
    unmigrated.dispose()
