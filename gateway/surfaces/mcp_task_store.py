"""The MCP tasks the gateway gave its clients, in the ``mcp_tasks`` table.

A row is written, durably, before the client is told the task's id (so a
``tasks/get`` right after always finds it), and read only by the identity that
created it: `get` takes the reader and answers ``None`` for anyone else, exactly as
for an id that does not exist. Times are the database clock's (epoch seconds), so
every process agrees on when a task expires; an expired task is not found, and is
deleted by the next task created after it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.store import dialect_of
from gateway.store.tables import mcp_tasks
from gateway.types import Identity

TaskKind = Literal["held", "result", "upstream"]

# How long a task is kept when neither the client nor (for an upstream's task) the
# upstream said, and the longest it is kept whatever they said.
DEFAULT_TTL_MS = 3_600_000
MAX_TTL_MS = 86_400_000


@dataclass(frozen=True)
class TaskRow:
    id: str
    kind: TaskKind
    owner: str
    request_id: str
    tool: str
    endpoint: str | None
    approval_id: str | None
    run_id: str | None
    result: dict[str, Any] | None
    created_at: float
    ttl_ms: int
    expires_at: float
    # kind upstream: the upstream's own task, and when the call's outcome was recorded.
    upstream_task_id: str | None = None
    outcome_at: float | None = None


def new_task_id() -> str:
    """128 random bits: a task id is unguessable (and still bound to its owner)."""
    return "tsk_" + secrets.token_hex(16)


class TaskStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = dialect_of(engine)
        self.now = self.dialect.now()

    def insert(
        self,
        *,
        task_id: str,
        kind: TaskKind,
        owner: Identity,
        request_id: str,
        tool: str,
        endpoint: str | None,
        ttl_ms: int,
        approval_id: str | None = None,
        run_id: str | None = None,
        result: dict[str, Any] | None = None,
        upstream_task_id: str | None = None,
    ) -> TaskRow:
        """Writes the task, on disk before this returns; deletes expired ones first."""
        with self.dialect.write_transaction(self.engine) as conn:
            conn.execute(sa.delete(mcp_tasks).where(mcp_tasks.c.expires_at < self.now))
            conn.execute(
                sa.insert(mcp_tasks).values(
                    id=task_id,
                    kind=kind,
                    owner=owner.key,
                    request_id=request_id,
                    tool=tool,
                    endpoint=endpoint,
                    approval_id=approval_id,
                    run_id=run_id,
                    result=result,
                    upstream_task_id=upstream_task_id,
                    created_at=self.now,
                    ttl_ms=ttl_ms,
                    expires_at=self.now + ttl_ms / 1000.0,
                )
            )
            row = conn.execute(sa.select(mcp_tasks).where(mcp_tasks.c.id == task_id)).one()
        return _task(row)

    def claim_outcome(self, task_id: str) -> bool:
        """Whether this caller records the call's outcome of an upstream task: true for
        exactly one caller, whichever process asks (a compare-and-swap on the row)."""
        with self.dialect.write_transaction(self.engine) as conn:
            claimed = conn.execute(
                sa.update(mcp_tasks)
                .where(mcp_tasks.c.id == task_id, mcp_tasks.c.outcome_at.is_(None))
                .values(outcome_at=self.now)
            )
        return bool(claimed.rowcount == 1)

    def find(self, task_id: str) -> TaskRow | None:
        """The unexpired task with this id, whoever owns it (for the audit of a refusal)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(mcp_tasks).where(
                    mcp_tasks.c.id == task_id, mcp_tasks.c.expires_at >= self.now
                )
            ).first()
        return None if row is None else _task(row)

    def get(self, task_id: str, reader: Identity) -> TaskRow | None:
        """The task if ``reader`` created it and it has not expired; else ``None``."""
        task = self.find(task_id)
        return task if task is not None and task.owner == reader.key else None

    def list(
        self, owner: Identity, *, after: tuple[float, str] | None, limit: int
    ) -> list[TaskRow]:
        """The owner's unexpired tasks, oldest first, after ``(created_at, id)``."""
        query = (
            sa.select(mcp_tasks)
            .where(mcp_tasks.c.owner == owner.key, mcp_tasks.c.expires_at >= self.now)
            .order_by(mcp_tasks.c.created_at, mcp_tasks.c.id)
            .limit(limit)
        )
        if after is not None:
            created, task_id = after
            query = query.where(
                sa.or_(
                    mcp_tasks.c.created_at > created,
                    sa.and_(mcp_tasks.c.created_at == created, mcp_tasks.c.id > task_id),
                )
            )
        with self.engine.connect() as conn:
            return [_task(row) for row in conn.execute(query)]


def _task(row: Any) -> TaskRow:
    return TaskRow(
        id=row.id,
        kind=row.kind,
        owner=row.owner,
        request_id=row.request_id,
        tool=row.tool,
        endpoint=row.endpoint,
        approval_id=row.approval_id,
        run_id=row.run_id,
        result=row.result,
        created_at=float(row.created_at),
        ttl_ms=int(row.ttl_ms),
        expires_at=float(row.expires_at),
        upstream_task_id=row.upstream_task_id,
        outcome_at=None if row.outcome_at is None else float(row.outcome_at),
    )
