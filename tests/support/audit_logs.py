"""A signed audit log made by the real writer and checkpointer, for tests of what an
auditor checks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, Checkpointer, SigningKey


async def checkpointed_log(
    engine: Engine, origin: str, batches: Sequence[Sequence[AuditRecord]]
) -> SigningKey:
    """Appends each batch (one append call) and signs a checkpoint after each, with a
    new key, which is returned. Checkpoints come only when asked for."""
    key = SigningKey.generate(origin)
    log = AuditLog(engine, origin)
    await log.start()
    checkpointer = Checkpointer(engine, origin, [key], every_entries=10**6, every_seconds=3600)
    await checkpointer.start()
    try:
        for records in batches:
            await log.append(*records)
            await checkpointer.checkpoint_now()
    finally:
        await log.close()
        await checkpointer.close()
    return key
