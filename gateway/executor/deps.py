"""What the executor's parts share: the run store and the gateway's own components."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.approvals.gate import Approvals
from gateway.audit import AuditLog, AuditRecord
from gateway.config import ExecutorConfig
from gateway.errors import AuditUnavailable
from gateway.executor.store import RunStore
from gateway.pipeline import Pipeline
from gateway.policy.decider import Decider
from gateway.upstreams.catalog import Catalog

log = logging.getLogger(__name__)


class Doorbell:
    """Wakes this process's idle workers: a run submitted here, or the database changed
    through another connection (`gateway.store.changes.ChangeFeed` rings it)."""

    def __init__(self) -> None:
        # Made on first use: an anyio event needs the running event loop.
        self._event: anyio.Event | None = None

    def current(self) -> anyio.Event:
        """The event the next `ring` sets. Take it *before* looking for work, so a run
        submitted while looking is not slept through."""
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    def ring(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None


@dataclass
class ExecutorDeps:
    store: RunStore
    pipeline: Pipeline
    catalog: Catalog
    audit: AuditLog
    decider: Decider
    config: ExecutorConfig
    # The approvals engine, or its null object when approvals are disabled.
    approvals: Approvals
    doorbell: Doorbell = field(default_factory=Doorbell)

    def event(self, kind: str, run_id: str, payload: dict[str, Any], subject: str) -> None:
        self.events([(kind, payload)], run_id, subject)

    def events(self, events: list[tuple[str, dict[str, Any]]], run_id: str, subject: str) -> None:
        """Queues run or step events for the audit log (one batch, in order) without
        waiting for the commit: the calls a step makes are durably recorded by the
        pipeline before they are forwarded; these entries tie them to the run
        (docs/decisions/0005 reasoning)."""
        records = [
            AuditRecord(kind, run_id, {"run_id": run_id, **payload}, subject)
            for kind, payload in events
        ]
        kinds = ", ".join(kind for kind, _ in events)
        try:
            future = self.audit.submit(*records)
        except AuditUnavailable as exc:
            log.error("%s of %s not recorded: %s", kinds, run_id, exc.message)
            return
        future.add_done_callback(lambda f: _log_failure(f, kinds, run_id))


def _log_failure(future: Any, kind: str, run_id: str) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("%s of %s not recorded: %s", kind, run_id, future.exception())
