"""The checkpointer: signs the tree head every N entries or T seconds, stores the
signed checkpoint, publishes it outside the database.

One step (`Checkpointer.checkpoint_now`): read the committed chain head (size N);
extend the tree store to N (`TreeStore.extend`), which yields the root; check that the
new tree is consistent with the last checkpoint (a consistency proof, verified as an
auditor would: the log must never sign a head that contradicts one it signed);
sign with every configured key valid for N; insert into ``audit_checkpoints`` under
the tree lock unless a checkpoint of size >= N exists; publish to every sink; then ask
the configured witnesses to cosign it (`gateway.audit.witnessing`) and publish it
again with their cosignature lines. A witness that is down delays nothing but its own
cosignature: it is asked again, with the latest checkpoint, after a back-off.

Invariants:

- Checkpoint sizes only grow: the database refuses a second row of a size, the
  insert is skipped when a larger one exists, and sinks refuse to go backwards.
- Nothing is signed for entries not committed, nor for the empty log; a log shorter
  than its latest checkpoint (truncated) is reported on every step, never re-signed.
- Appends never wait for a checkpoint (PostgreSQL: separate lock; SQLite: the tree
  rows are computed before the short write transaction).

When it looks: every `POLL_INTERVAL_S` while something is owed (entries not covered,
a witness lacking the latest checkpoint). With nothing owed, a checkpointer that
`follow`s its process's log sleeps until that log commits an append, or at the latest
``every_seconds`` (entries of another process that died before its own checkpointer
covered them); one that follows none looks every `POLL_INTERVAL_S` regardless
(docs/decisions/0042).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.audit.cosignatures import cosignature_lines, cosigned_note
from gateway.audit.keys import SigningKey, read_keys, register_key
from gateway.audit.reader import chain_head
from gateway.audit.sinks import CheckpointSink
from gateway.audit.stored_checkpoints import StoredCheckpoint, latest_checkpoint, log_note
from gateway.audit.tree_store import TREE_LOCK_KEY, TreeStore
from gateway.audit.witnessing import Witnessing
from gateway.clock import Clock, monotonic
from gateway.errors import ConfigError
from gateway.store.db import exclusive_transaction
from gateway.store.tables import audit_checkpoints
from gateway.tlog.checkpoint import Checkpoint, sign_checkpoint
from gateway.tlog.errors import ChainError
from gateway.tlog.keys import format_keys
from gateway.tlog.leaf import format_ts
from gateway.tlog.note import check_key_name
from gateway.tlog.verify_proof import verify_consistency

if TYPE_CHECKING:
    from gateway.audit.sequencer import AuditLog

logger = logging.getLogger("gateway.audit")

# How often the head is polled; the smaller of this and every_seconds.
POLL_INTERVAL_S = 0.1
# After a failed step, wait this long before the next try (a down database must not
# turn into a busy loop of errors).
RETRY_DELAY_S = 1.0
# At shutdown, how long the witnesses may take to cosign the final checkpoint.
FINAL_WITNESSING_S = 10.0


class Checkpointer:
    """Makes, stores and publishes signed checkpoints of one log."""

    def __init__(
        self,
        engine: Engine,
        origin: str,
        signing_keys: Sequence[SigningKey],
        *,
        every_entries: int = 1000,
        every_seconds: float = 10.0,
        sinks: Sequence[CheckpointSink] = (),
        witnessing: Witnessing | None = None,
        clock: Clock = monotonic,
    ) -> None:
        try:
            check_key_name(origin)
        except ValueError as exc:
            raise ConfigError(f"audit origin is not usable as a key name: {exc}") from None
        if not signing_keys:
            raise ConfigError("the checkpointer needs at least one audit signing key")
        for key in signing_keys:
            if key.name != origin:
                raise ConfigError(
                    f"audit signing key {key.verifier.encode()} is named {key.name!r}; "
                    f"the key name must be the log's origin {origin!r}"
                )
        if every_entries < 1 or every_seconds <= 0:
            raise ConfigError("checkpoint_every_entries must be >= 1, checkpoint_every_s > 0")
        self._engine = engine
        self._origin = origin
        self._signing_keys = tuple(signing_keys)
        self._every_entries = every_entries
        self._every_seconds = every_seconds
        self._sinks = tuple(sinks)
        self._witnessing = witnessing
        self._tree = TreeStore(engine)
        self._lock = asyncio.Lock()  # one step at a time per process
        self._witness_lock = asyncio.Lock()  # one witnessing round at a time
        self._witness_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Per sink, the largest (size, cosignature count) it acknowledged: a sink that
        # missed one (an error, a restart) gets the latest on the next step, and a
        # checkpoint that gained cosignatures is published again.
        self._published = [(0, 0)] * len(self._sinks)
        self._last_size = 0
        self._clock = clock  # for every_seconds (gateway.clock)
        self._last_time = clock()
        # `follow`: appends committed since the loop last read the head (set from any
        # thread), and the loop to wake while it sleeps with nothing owed.
        self._follows = False
        self._appended = threading.Event()
        self._sleeping: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    @property
    def tree(self) -> TreeStore:
        return self._tree

    def follow(self, log: AuditLog) -> None:
        """Sleeps, with nothing owed, until ``log`` (this process's) commits an append,
        instead of looking at the head every `POLL_INTERVAL_S` (module docstring)."""
        log.on_commit(self._log_appended)
        self._follows = True

    def _log_appended(self) -> None:
        # From the committing thread. Wakes the loop only when it sleeps: one cross-
        # thread call per sleep, not one per commit.
        self._appended.set()
        loop, self._sleeping = self._sleeping, None
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody sleeps
                loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        """Registers the signing keys, publishes the latest checkpoint and the keys to
        every sink (a sink may have missed them), then checkpoints in the background."""
        if self._task is not None:
            raise RuntimeError("this Checkpointer was already started")
        latest = await asyncio.to_thread(self._register_keys)
        self._last_size = 0 if latest is None else latest.size
        if self._witnessing is not None:
            await self._witnessing.start()
        await asyncio.to_thread(self._publish_keys)
        if latest is not None:
            await asyncio.to_thread(self._publish, latest)
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="audit-checkpointer")

    async def close(self) -> None:
        """Stops the background loop (between steps, never inside one) and makes a
        last checkpoint of what was appended (close the AuditLog first, so that it
        covers every entry)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await task
        witnessing, self._witness_task = self._witness_task, None
        if witnessing is not None:
            # The final checkpoint asks the witnesses again, bounded by their timeouts.
            witnessing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await witnessing
        try:
            stored = await self._checkpoint_and_publish()
            if stored is not None:
                # Asked once more, so the last published checkpoint is cosigned too; a
                # witness that hangs may not hold up the shutdown for long.
                await asyncio.wait_for(self._witness(stored), FINAL_WITNESSING_S)
        except TimeoutError:
            logger.warning("witnesses did not answer for the final checkpoint in time")
        except Exception:  # shutting down: report, do not mask the shutdown
            logger.exception("final audit checkpoint failed")
        if self._witnessing is not None:
            await self._witnessing.close()

    async def checkpoint_now(self) -> StoredCheckpoint | None:
        """Checkpoints the current head unless a checkpoint already covers it; returns
        the latest stored checkpoint (None while the log is empty). Publishes it to
        every sink that does not have it yet, then asks the witnesses that have not
        cosigned it (and are not backing off) and publishes it again with their
        cosignatures (waiting for them, at most each witness's timeout)."""
        stored = await self._checkpoint_and_publish()
        if stored is not None:
            await self._witness(stored)
        return stored

    async def _checkpoint_and_publish(self) -> StoredCheckpoint | None:
        async with self._lock:
            stored, created = await asyncio.to_thread(self._step)
            if stored is None:
                return None
            self._last_size = stored.size
            if created:
                self._last_time = self._clock()
            await asyncio.to_thread(self._publish, stored)
            return stored

    async def _witness(self, stored: StoredCheckpoint) -> None:
        """Asks the witnesses due for ``stored`` and publishes it again with what they
        cosigned. One round at a time; never under the checkpoint lock, so a slow
        witness delays no checkpoint."""
        if self._witnessing is None:
            return
        async with self._witness_lock:
            if not self._witnessing.due(stored.size):
                return
            note = await asyncio.to_thread(log_note, self._engine, stored.size)
            added = await self._witnessing.witness(stored.size, note, self._tree)
        if added:
            async with self._lock:  # sinks see one publisher at a time
                await asyncio.to_thread(self._publish, stored)

    def _witness_in_background(self, stored: StoredCheckpoint | None) -> None:
        """Starts a witnessing round for ``stored`` unless one is running (the loop
        sees a witness still due on its next poll and starts another)."""
        if stored is None or self._witnessing is None or not self._witnessing.due(stored.size):
            return
        if self._witness_task is not None and not self._witness_task.done():
            return
        self._witness_task = asyncio.create_task(self._witness(stored), name="audit-witnessing")
        self._witness_task.add_done_callback(_log_failure)

    # --- the background loop ---------------------------------------------------------

    async def _run(self) -> None:
        poll = min(self._every_seconds, POLL_INTERVAL_S)
        owed = True  # until the first look says otherwise
        while not await self._stopped_within(poll):
            if not owed and await self._slept_until_appended():
                return
            try:
                self._appended.clear()  # appends committed after this: look again
                head = await asyncio.to_thread(chain_head, self._engine)
                pending = (0 if head is None else head.size) - self._last_size
                owed = pending > 0 or (
                    self._witnessing is not None and self._witnessing.lacking(self._last_size)
                )
                waited = self._clock() - self._last_time
                if pending >= self._every_entries or (
                    pending > 0 and waited >= self._every_seconds
                ):
                    self._witness_in_background(await self._checkpoint_and_publish())
                elif self._witnessing is not None and self._witnessing.due(self._last_size):
                    # A witness missed the latest checkpoint: ask it again.
                    self._witness_in_background(await self._checkpoint_and_publish())
            except Exception:
                logger.exception("audit checkpoint failed; retrying")
                owed = True
                await self._stopped_within(RETRY_DELAY_S)

    async def _slept_until_appended(self) -> bool:
        """With nothing owed: waits for an append of the followed log, at most
        ``every_seconds``; returns whether the checkpointer was stopped meanwhile.
        Never sleeps for a checkpointer that follows no log."""
        if not self._follows:
            return False
        self._sleeping = asyncio.get_running_loop()
        self._wake.clear()
        if self._appended.is_set():  # committed before it could be told to wake us
            self._sleeping = None
            return False
        stop = asyncio.ensure_future(self._stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {stop, wake}, timeout=self._every_seconds, return_when="FIRST_COMPLETED"
            )
        finally:
            self._sleeping = None
            stop.cancel()
            wake.cancel()
        return self._stopping.is_set()

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # --- one step, in a worker thread -------------------------------------------------

    def _step(self) -> tuple[StoredCheckpoint | None, bool]:
        head = chain_head(self._engine)
        latest = latest_checkpoint(self._engine)
        size = 0 if head is None else head.size
        if latest is not None and size < latest.size:
            # Entries under a signed checkpoint are gone: say so on every step rather
            # than wait quietly for the log to grow past the old size.
            raise ChainError(
                size,
                f"the log has {size} entries but a checkpoint of size {latest.size} was "
                "signed: entries were removed (restore the database, then run the verifier)",
            )
        if size == 0 or (latest is not None and latest.size >= size):
            return latest, False
        root = self._tree.extend(size)
        if latest is not None:
            # The log must never sign a head inconsistent with one it signed: prove it
            # to ourselves exactly as an auditor will.
            proof = self._tree.consistency_proof(latest.size, size)
            verify_consistency(latest.size, size, proof, latest.root, root)
        registry = read_keys(self._engine)
        signers = [
            key
            for key in self._signing_keys
            if any(
                r.key_id == key.key_id and r.name == key.name and r.covers(size) for r in registry
            )
        ]
        if not signers:
            raise ConfigError(
                f"no configured audit signing key is valid for tree size {size}; "
                "register a new key (see docs/audit.md, keys)"
            )
        note = sign_checkpoint(Checkpoint(self._origin, size, root), signers)
        stored = StoredCheckpoint(size, root, note, format_ts(datetime.now(UTC)))
        with exclusive_transaction(self._engine, TREE_LOCK_KEY) as conn:
            current = latest_checkpoint(conn)
            if current is not None and current.size >= size:
                return current, False  # another process got there first
            conn.execute(
                audit_checkpoints.insert(),
                {"size": size, "root": root, "note": note, "ts": stored.ts},
            )
        logger.info("audit checkpoint at tree size %d", size)
        return stored, True

    def _register_keys(self) -> StoredCheckpoint | None:
        latest = latest_checkpoint(self._engine)
        # A key added to a running log signs from the next checkpoint on.
        valid_from = 0 if latest is None else latest.size + 1
        for key in self._signing_keys:
            register_key(self._engine, key.verifier, valid_from_size=valid_from)
        ours = {(k.name, k.key_id) for k in self._signing_keys}
        for record in read_keys(self._engine):
            if record.valid_to_size is None and (record.name, record.key_id) not in ours:
                logger.warning(
                    "audit key %s is still valid but not configured here; if it was "
                    "replaced, set its valid_to_size",
                    record.verifier.encode(),
                )
        return latest

    def _publish(self, stored: StoredCheckpoint) -> None:
        checkpoint = Checkpoint(self._origin, stored.size, stored.root)
        lines = cosignature_lines(self._engine, stored.size)
        note = cosigned_note(log_note(self._engine, stored.size), lines)
        for index, sink in enumerate(self._sinks):
            if self._published[index] >= (stored.size, len(lines)):
                continue
            try:
                sink.publish(checkpoint, note)
            except OSError:
                # The checkpoint is stored; the next step publishes the latest again.
                logger.exception("could not publish audit checkpoint %d to %r", stored.size, sink)
            else:
                self._published[index] = (stored.size, len(lines))

    def _publish_keys(self) -> None:
        text = format_keys(read_keys(self._engine))
        for sink in self._sinks:
            try:
                sink.publish_keys(text)
            except OSError:
                logger.exception("could not publish the audit keys to %r", sink)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("audit witnessing failed; retrying", exc_info=error)
