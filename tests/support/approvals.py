"""Time passing for an approval, without waiting for it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.approvals.models import add_seconds
from gateway.approvals.store import ApprovalStore
from gateway.store.tables import approvals


def lapse(engine: Engine, approval_id: str) -> None:
    """Moves the approval's ``expires_at`` to a moment already past on the database
    clock, the one every expiry rule compares against (docs/approvals.md): as if its
    TTL ran out just now. Nothing else of the row changes (not its version: expiring
    is still the gateway's to do, and to record)."""
    past = add_seconds(ApprovalStore(engine).now(), -1)
    with engine.begin() as conn:
        changed = conn.execute(
            sa.update(approvals).where(approvals.c.id == approval_id).values(expires_at=past)
        ).rowcount
    assert changed == 1, f"no approval {approval_id}"
