"""Schedules: a plan registered to run on a cron schedule (UTC, five fields).

Registering a schedule is a ``plan/submit`` decision, and so is each firing (the
policy in force then decides; a refusal is audited as ``schedule.refused``).

Exactly once per occurrence, across restarts and several workers:

1. a worker leases a due schedule (``lease_expires_at`` on the database clock);
2. it submits the run with the idempotency key ``schedule:<id>:<occurrence>``, unique
   per submitter, so a second submission of the same occurrence finds the first run;
3. it advances ``next_fire_at`` only if it still equals that occurrence.

A crash between 2 and 3 makes the next worker submit the same occurrence again, which
returns the existing run: nothing fires twice, nothing is skipped. After a long outage
at most `MAX_CATCH_UP` missed occurrences fire; older ones are skipped and the skip
is written to the audit log (``schedule.skipped``), never silently.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa

from gateway.audit import AuditRecord
from gateway.errors import BadRequest, GatewayError
from gateway.executor.errors import ScheduleNotFound
from gateway.executor.plan import Plan, parse_plan
from gateway.executor.records import principal_from_json, principal_to_json
from gateway.executor.validation import check_inputs, validate_plan
from gateway.logs import new_request_id
from gateway.store.tables import schedules
from gateway.timestamps import format_epoch
from gateway.types import Principal, Transport

if TYPE_CHECKING:
    from gateway.executor.service import Executor

log = logging.getLogger(__name__)

MAX_CATCH_UP = 10
SCHEDULE_LEASE_S = 30.0


# croniter (with dateutil) is imported where a cron expression is read, not with the
# executor: a gateway without schedules never needs it, and it is a noticeable part of
# the imports before a gateway serves (bench/start_time.py).


def next_occurrence(cron: str, after: float) -> float:
    from croniter import croniter

    return float(croniter(cron, datetime.fromtimestamp(after, UTC)).get_next(float))


def check_cron(cron: str) -> None:
    from croniter import croniter

    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise BadRequest(
            f"{cron!r} is not a five-field cron expression (minute hour day month weekday)"
        )


class Schedules:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.store = executor.store

    async def add(
        self,
        principal: Principal,
        *,
        name: str,
        cron: str,
        plan: Plan | dict[str, Any],
        inputs: dict[str, Any] | None = None,
        request_id: str,
        transport: Transport,
    ) -> dict[str, Any]:
        check_cron(cron)
        plan = plan if isinstance(plan, Plan) else parse_plan(plan)
        inputs = inputs or {}
        deps = self.executor.deps
        validate_plan(plan, deps.catalog, max_steps=deps.config.max_steps)
        check_inputs(plan, inputs)
        schedule_id = "sch_" + secrets.token_hex(8)
        # Registering is a plan/submit decision too (nothing runs now; a refusal here
        # spares every future firing the same refusal).
        await self.executor.decide_submission(
            principal,
            plan,
            inputs,
            request_id=request_id,
            transport=transport,
            run_id=None,
            schedule_id=schedule_id,
        )
        now = await anyio.to_thread.run_sync(self.store.clock)

        def insert() -> None:
            with self.store.write(durable=True) as conn:
                taken = conn.execute(
                    sa.select(schedules.c.id).where(schedules.c.name == name)
                ).first()
                if taken:
                    raise BadRequest(f"a schedule named {name!r} exists already")
                self.store.dialect.announce(conn)  # idle workers take its first occurrence
                conn.execute(
                    sa.insert(schedules).values(
                        id=schedule_id,
                        name=name,
                        cron=cron,
                        plan=plan.to_json(),
                        plan_hash=plan.plan_hash,
                        inputs=inputs,
                        principal=principal_to_json(principal),
                        created_by=principal.sub,
                        owner=principal.identity.key,
                        created_at=now,
                        next_fire_at=next_occurrence(cron, now),
                        enabled=True,
                    )
                )

        await anyio.to_thread.run_sync(insert)
        await deps.audit.append(
            AuditRecord(
                "schedule.added",
                schedule_id,
                {
                    "schedule_id": schedule_id,
                    "name": name,
                    "cron": cron,
                    "plan_hash": plan.plan_hash,
                    "principal": principal.to_audit(),
                },
                principal.sub,
            )
        )
        return (await self.list(principal, schedule_id=schedule_id))[0]

    async def list(
        self, viewer: Principal | None, *, schedule_id: str | None = None
    ) -> list[dict[str, Any]]:
        query = sa.select(schedules).order_by(schedules.c.name)
        if viewer is not None:
            query = query.where(schedules.c.owner == viewer.identity.key)
        if schedule_id is not None:
            query = query.where(schedules.c.id == schedule_id)

        def read() -> list[Any]:
            with self.store.engine.connect() as conn:
                return list(conn.execute(query))

        return [_view(row) for row in await anyio.to_thread.run_sync(read)]

    async def remove(self, schedule_id: str, viewer: Principal | None) -> None:
        def delete() -> Any:
            with self.store.write(durable=True) as conn:
                row = conn.execute(
                    sa.select(schedules).where(schedules.c.id == schedule_id)
                ).first()
                if row is None or (viewer is not None and row.owner != viewer.identity.key):
                    raise ScheduleNotFound(f"no schedule {schedule_id!r}")
                conn.execute(sa.delete(schedules).where(schedules.c.id == schedule_id))
                return row

        row = await anyio.to_thread.run_sync(delete)
        await self.executor.deps.audit.append(
            AuditRecord(
                "schedule.removed",
                schedule_id,
                {
                    "schedule_id": schedule_id,
                    "name": row.name,
                    "by": viewer.sub if viewer else "operator",
                },
                row.created_by,
            )
        )

    # --- firing --------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Fires every due occurrence this worker can lease; returns how many."""
        fired = 0
        for _ in range(MAX_CATCH_UP + 1):
            leased = await anyio.to_thread.run_sync(self._lease_due)
            if leased is None:
                break
            fired += await self._fire(leased)
        return fired

    def _lease_due(self) -> Any:
        now = self.store.now
        due = sa.and_(
            schedules.c.enabled.is_(True),
            schedules.c.next_fire_at <= now,
            sa.or_(schedules.c.lease_expires_at.is_(None), schedules.c.lease_expires_at < now),
        )
        with self.store.engine.connect() as conn:  # cheap look first: most polls find none
            if conn.execute(sa.select(schedules.c.id).where(due).limit(1)).first() is None:
                return None
        candidate = (
            sa.select(schedules.c.id)
            .where(due)
            .order_by(schedules.c.next_fire_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with self.store.write(durable=True) as conn:
            return conn.execute(
                sa.update(schedules)
                .where(schedules.c.id == candidate.scalar_subquery())
                .values(lease_expires_at=now + SCHEDULE_LEASE_S)
                .returning(*schedules.c, now.label("now"))
            ).first()

    async def _fire(self, row: Any) -> int:
        occurrence = float(row.next_fire_at)
        following = next_occurrence(row.cron, occurrence)
        skipped: list[float] = []
        # Too far behind: skip to the newest MAX_CATCH_UP occurrences, and say so.
        # `occurrence` is skipped while MAX_CATCH_UP newer ones are due too, i.e. while
        # the MAX_CATCH_UP-th occurrence after it (`following` advanced
        # MAX_CATCH_UP - 1 times) is not in the future.
        while following <= row.now and len(skipped) < 100_000:
            probe = following
            for _ in range(MAX_CATCH_UP - 1):
                probe = next_occurrence(row.cron, probe)
            if probe > row.now:
                break
            skipped.append(occurrence)
            occurrence, following = following, next_occurrence(row.cron, following)
        deps = self.executor.deps
        principal = principal_from_json(row.principal)
        if skipped:
            await deps.audit.append(
                AuditRecord(
                    "schedule.skipped",
                    row.id,
                    {
                        "schedule_id": row.id,
                        "count": len(skipped),
                        "first": format_epoch(skipped[0]),
                        "last": format_epoch(skipped[-1]),
                    },
                    principal.sub,
                )
            )
        run_id = None
        try:
            run_id, _ = await self.executor.submit(
                principal,
                parse_plan(row.plan),
                row.inputs,
                idempotency_key=f"schedule:{row.id}:{format_epoch(occurrence)}",
                request_id=new_request_id(),
                transport="executor",
                schedule_id=row.id,
            )
        except GatewayError as exc:
            # Refused or invalid now (policy or catalog changed): recorded, and the
            # schedule moves on to its next occurrence.
            log.warning(
                "schedule %s at %s not fired: %s", row.id, format_epoch(occurrence), exc.message
            )
            await deps.audit.append(
                AuditRecord(
                    "schedule.refused",
                    row.id,
                    {
                        "schedule_id": row.id,
                        "occurrence": format_epoch(occurrence),
                        "error": exc.to_dict(),
                    },
                    principal.sub,
                )
            )

        def advance() -> None:
            with self.store.write(durable=True) as conn:
                conn.execute(
                    sa.update(schedules)
                    .where(schedules.c.id == row.id, schedules.c.next_fire_at == row.next_fire_at)
                    .values(
                        next_fire_at=following,
                        last_fired_at=occurrence,
                        last_run_id=run_id,
                        lease_expires_at=None,
                    )
                )

        await anyio.to_thread.run_sync(advance)
        return 1 if run_id else 0


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "cron": row.cron,
        "plan_hash": row.plan_hash,
        "created_by": row.created_by,
        "created_at": format_epoch(row.created_at),
        "next_fire_at": format_epoch(row.next_fire_at),
        "last_fired_at": format_epoch(row.last_fired_at),
        "last_run_id": row.last_run_id,
        "enabled": bool(row.enabled),
    }
