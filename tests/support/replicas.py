"""A deployment as processes on loopback: gateway replicas and `gateway worker`
processes sharing one database, a bounded call load against the replicas, and what
the audit log says about it afterwards.

Faults are the caller's: it kills, stops or starts these processes (or the database)
while `CallLoad` runs, then checks the answers and the log with `audit_facts`.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.audit import iter_entries
from gateway.audit.export import database_source
from gateway.store import create_engine
from gateway.tlog.verifier import verify_log
from tests.support.processes import GatewayServer, Process, spawn
from tests.support.waiting import eventually

CALL_KINDS = ("call.attempt", "call.decision", "call.outcome")


@dataclass
class Deployment:
    """``gateways`` replicas (serving, no executor loops of their own unless asked)
    and ``workers`` `gateway worker` processes, all on one storage URL and trusting one
    token issuer."""

    gateways: list[GatewayServer]
    workers: list[Process] = field(default_factory=list)

    @classmethod
    def configure(
        cls,
        directory: Path,
        *,
        replicas: int,
        storage_url: str,
        upstreams: list[dict[str, Any]],
        policy: Path,
        executor: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Deployment:
        gateways = []
        for index in range(replicas):
            server = GatewayServer.configure(
                directory / f"replica-{index}",
                upstreams=upstreams,
                policy=policy,
                storage_url=storage_url,
            )
            server.config["executor"] = {**(executor or {})}
            server.config.update(extra or {})
            gateways.append(server)
        first = gateways[0]
        for server in gateways[1:]:
            # One issuer and one audit key, as replicas of one deployment share them.
            server.issuer_key = first.issuer_key
            server.config["identity"] = first.config["identity"]
            server.config["audit"] = first.config["audit"]
        return cls(gateways)

    def start(self, workers: int = 0, worker_executor: dict[str, Any] | None = None) -> Deployment:
        for server in self.gateways:
            server.start()
        first = self.gateways[0]
        for index in range(workers):
            config_path = first.directory.parent / f"worker-{index}.yaml"
            config = {**first.config, "executor": {**(worker_executor or {"workers": 1})}}
            config_path.write_text(yaml.safe_dump(config))
            self.workers.append(
                spawn(
                    [sys.executable, "-m", "gateway", "worker", "--config", str(config_path)],
                    first.directory.parent / f"worker-{index}.log",
                )
            )
        for worker in self.workers:
            eventually(
                lambda worker=worker: _ready(worker), "a worker process ready", detail=worker.log
            )
        return self

    def stop(self) -> None:
        for process in [*self.workers, *(g.process for g in self.gateways if g.process)]:
            process.stop()

    def alive(self) -> list[int]:
        """Pids of the processes still running (all of them, if nothing was killed)."""
        processes = [*self.workers, *(g.process for g in self.gateways if g.process)]
        return [p.popen.pid for p in processes if p.popen.poll() is None]

    def refused_after_unknown_commit(self) -> set[str]:
        """Calls a replica did not forward because the COMMIT of their attempt and
        decision was cut off by the database's crash (`CommitUnknown`): the database may
        have kept both, so the gateway logs a "not forwarded" outcome for each once the
        database is back (docs/operations.md, Faults)."""
        return {ref for g in self.gateways for ref in _UNKNOWN_COMMIT.findall(g.log())}

    def logs(self) -> str:
        parts = [f"--- {g.directory.name}\n{g.log()[-4000:]}" for g in self.gateways]
        parts += [f"--- worker {i}\n{w.log()[-4000:]}" for i, w in enumerate(self.workers)]
        return "\n".join(parts)


def _ready(worker: Process) -> bool:
    if worker.popen.poll() is not None:
        raise AssertionError(f"the worker exited with {worker.popen.returncode}:\n{worker.log()}")
    return "worker ready" in worker.log()


@dataclass
class Answer:
    text: str
    replica: int
    status: int | None  # None: no HTTP answer at all (connection refused or cut)
    body: str


class CallLoad:
    """``clients`` threads making ``total`` REST calls of ``tool`` between them, each
    with a unique ``text`` argument, round-robin over the replicas. Bounded in count;
    `wait` bounds it in time."""

    def __init__(
        self,
        gateways: list[GatewayServer],
        *,
        tool: str,
        total: int,
        clients: int,
        marker: str,
        argument: Callable[[str], dict[str, Any]] = lambda text: {"text": text},
    ) -> None:
        self.gateways = gateways
        self.tool = tool
        self.total = total
        self.marker = marker
        self.argument = argument
        self.answers: list[Answer] = []
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        # Each replica has its own audience (its URL), as behind no load balancer.
        self._tokens = [g.token(sub="agent:load") for g in gateways]
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> CallLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """No more calls begin (those under way finish); then `wait`."""
        self._stopped.set()

    def wait(self, timeout_s: float) -> list[Answer]:
        for thread in self._threads:
            thread.join(timeout_s)
            if thread.is_alive():
                raise AssertionError(f"the load did not finish within {timeout_s:g} s")
        return self.answers

    def count(self, predicate: Callable[[Answer], bool]) -> int:
        with self._lock:
            return sum(1 for answer in self.answers if predicate(answer))

    def _client(self) -> None:
        with httpx.Client(timeout=120) as client:
            while (number := next(self._numbers)) < self.total and not self._stopped.is_set():
                replica = number % len(self.gateways)
                text = f"{self.marker}-{number}"
                try:
                    response = client.post(
                        f"{self.gateways[replica].url}/v1/tools/{self.tool}/call",
                        headers={"Authorization": f"Bearer {self._tokens[replica]}"},
                        json={"arguments": self.argument(text)},
                    )
                    answer = Answer(text, replica, response.status_code, response.text)
                except httpx.HTTPError as exc:
                    answer = Answer(text, replica, None, repr(exc))
                with self._lock:
                    self.answers.append(answer)


# The pipeline's line for such a call (gateway/pipeline.py, the sequencer's message).
_UNKNOWN_COMMIT = re.compile(
    r"call (\S+) not forwarded: audit log unavailable: [^\n]*may or may not be in the log"
)


@dataclass
class AuditFacts:
    """What the log holds: the verifier's faults, every (kind, ref) with how many
    entries it has, and the call references by their ``text`` argument."""

    faults: list[str]
    outcome_unknown: list[str]
    unknown_refs: set[str]
    size: int
    entries: Counter[tuple[str, str]]
    refs_by_text: dict[str, list[str]]
    allowed: set[str]
    not_forwarded: set[str]  # refs whose outcome says the call was never forwarded

    def duplicated(self) -> list[tuple[str, str]]:
        return [key for key, n in self.entries.items() if n > 1 and key[0] in CALL_KINDS]


def audit_facts(storage_url: str) -> AuditFacts:
    engine = create_engine(storage_url)
    try:
        report = verify_log(database_source(engine))
        entries: Counter[tuple[str, str]] = Counter()
        refs_by_text: dict[str, list[str]] = {}
        allowed: set[str] = set()
        not_forwarded: set[str] = set()
        size = 0
        for entry in iter_entries(engine):
            size += 1
            entries[(entry.kind, entry.ref)] += 1
            if entry.payload is None:
                continue
            if entry.kind == "call.attempt":
                text = entry.payload.get("arguments", {}).get("text")
                if isinstance(text, str):
                    refs_by_text.setdefault(text, []).append(entry.ref)
            elif entry.kind == "call.decision" and entry.payload["decision"]["allow"]:
                allowed.add(entry.ref)
            elif entry.kind == "call.outcome" and entry.payload.get("forwarded") is False:
                not_forwarded.add(entry.ref)
    finally:
        engine.dispose()
    unknown = [str(u) for u in report.outcome_unknown]
    return AuditFacts(
        [f.message for f in report.faults],
        unknown,
        {u.ref for u in report.outcome_unknown},
        size,
        entries,
        refs_by_text,
        allowed,
        not_forwarded,
    )


def settled_audit_facts(storage_url: str) -> AuditFacts:
    """`audit_facts` once every allowed call's outcome is in the log: an outcome rides
    with the next append, or its own commit within ``LINGER_S`` (ADR 0026), so the
    last call's may still be on its way when its caller has the answer; one whose
    transaction a database crash cut off is written once the database is back."""

    def settled() -> AuditFacts | None:
        facts = audit_facts(storage_url)
        return None if facts.unknown_refs else facts

    return eventually(settled, "every forwarded call's outcome in the audit log")
