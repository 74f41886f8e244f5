"""Submitting checkpoints to witnesses (C2SP tlog-witness) and keeping their cosignatures.

For each new signed checkpoint the checkpointer asks every configured witness to
cosign it: ``POST <url>/add-checkpoint`` with the consistency proof from the size that
witness last cosigned (`gateway.tlog.consistency` is the body). The answers:

- 200: the cosignature line, verified against the witness's configured key before it
  is stored (`gateway.audit.cosignatures`); a line that does not verify is a failure;
- 409 ``text/x.tlog.size``: the witness's view is at another size (it lost its state,
  another replica submitted meanwhile, or the gateway's record is behind); the request
  is made again from that size, at most `MAX_SIZE_RETRIES` times. A witness ahead of
  this checkpoint needs nothing from it;
- 409 otherwise, or 422: the witness refuses the checkpoint as inconsistent with what
  it cosigned before: the log forked (a restored or second database with the same key
  and origin). Logged as an error and counted; never retried quickly.

A witness that is down, slow or refusing never holds up an append or a checkpoint:
the checkpoint is stored and published first, each request is bounded by the
witness's ``timeout_s``, and a failed witness is asked again (the latest checkpoint)
after a back-off that doubles from `RETRY_BASE_S` up to `RETRY_MAX_S`. Every failure
is logged and counted in ``gateway_audit_witness_failures_total``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine

from gateway.audit.cosignatures import cosigned_sizes, store_cosignature
from gateway.audit.tree_store import TreeStore
from gateway.clock import Clock, monotonic
from gateway.errors import GatewayError
from gateway.metrics import WITNESS_COSIGNED_SIZE, WITNESS_FAILURES
from gateway.tlog.consistency import format_consistency_proof
from gateway.tlog.cosignature import WitnessKey, verify_cosignatures
from gateway.tlog.errors import NoteError

logger = logging.getLogger("gateway.audit")

ADD_CHECKPOINT = "/add-checkpoint"
SIZE_MEDIA_TYPE = "text/x.tlog.size"
MAX_SIZE_RETRIES = 2
RETRY_BASE_S = 1.0
RETRY_MAX_S = 60.0
# A witness answers one line per key; more than this is not a witness's answer.
MAX_RESPONSE_BYTES = 16 * 1024


@dataclass(frozen=True)
class WitnessEndpoint:
    """One configured witness: its cosignature key and submission URL prefix."""

    key: WitnessKey
    url: str
    timeout_s: float = 5.0

    @property
    def name(self) -> str:
        return self.key.name


class WitnessFailure(GatewayError):
    """A witness did not cosign: unreachable, refusing, or answering nonsense."""

    code = "audit_witness_failed"

    def __init__(self, witness: str, reason: str, message: str) -> None:
        super().__init__(f"witness {witness}: {message}", details={"reason": reason})
        self.reason = reason


@dataclass
class _Progress:
    cosigned: int = 0  # the largest size this witness is known to have cosigned
    stored: int = 0  # the largest size whose cosignature by it is stored here
    failures: int = 0
    next_attempt: float = 0.0


class Witnessing:
    """Gets cosignatures of the log's checkpoints from the configured witnesses."""

    def __init__(
        self,
        engine: Engine,
        witnesses: Sequence[WitnessEndpoint],
        *,
        clock: Clock = monotonic,
    ) -> None:
        names = [w.key.encode() for w in witnesses]
        if len(set(names)) != len(names):
            raise ValueError("a witness is configured twice")
        self._engine = engine
        self._witnesses = tuple(witnesses)
        self._clock = clock
        self._progress = {w.key: _Progress() for w in witnesses}
        self._http: httpx.AsyncClient | None = None

    @property
    def witnesses(self) -> tuple[WitnessEndpoint, ...]:
        return self._witnesses

    async def start(self) -> None:
        """Reads what each witness cosigned so far (the proof starts there)."""
        sizes = await asyncio.to_thread(cosigned_sizes, self._engine)
        for witness in self._witnesses:
            size = sizes.get((witness.key.name, witness.key.key_id), 0)
            progress = self._progress[witness.key]
            progress.cosigned = progress.stored = size
            WITNESS_COSIGNED_SIZE.labels(witness.name).set(size)
        self._http = httpx.AsyncClient(follow_redirects=False)

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def due(self, size: int) -> bool:
        """Whether some witness lacks a cosignature of ``size`` and may be asked now."""
        now = self._clock()
        return any(
            p.stored < size and p.cosigned <= size and p.next_attempt <= now
            for p in self._progress.values()
        )

    def lacking(self, size: int) -> bool:
        """Whether some witness lacks a cosignature of ``size`` (asked now or after its
        back-off): the checkpointer keeps looking until none does."""
        return any(p.stored < size and p.cosigned <= size for p in self._progress.values())

    async def witness(self, size: int, note: str, tree: TreeStore) -> int:
        """Asks every witness that has not cosigned the checkpoint of ``size`` (and is
        not backing off) for its cosignature; returns how many were stored. Never
        raises for a witness's failure: it is logged, counted and retried later."""
        if self._http is None:
            raise RuntimeError("Witnessing.start was not called")
        now = self._clock()
        wanted = [
            w
            for w in self._witnesses
            if (p := self._progress[w.key]).stored < size
            and p.cosigned <= size
            and p.next_attempt <= now
        ]
        results = await asyncio.gather(*(self._one(w, size, note, tree) for w in wanted))
        return sum(results)

    async def _one(self, witness: WitnessEndpoint, size: int, note: str, tree: TreeStore) -> bool:
        progress = self._progress[witness.key]
        try:
            stored = await self._submit(witness, progress, size, note, tree)
        except WitnessFailure as failure:
            progress.failures += 1
            delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (progress.failures - 1))
            progress.next_attempt = self._clock() + delay
            WITNESS_FAILURES.labels(witness.name, failure.reason).inc()
            level = logging.ERROR if failure.reason == "refused" else logging.WARNING
            logger.log(
                level,
                "checkpoint %d not cosigned: %s (next try in %.0f s)",
                size,
                failure.message,
                delay,
            )
            return False
        progress.failures = 0
        progress.next_attempt = 0.0
        return stored

    async def _submit(
        self, witness: WitnessEndpoint, progress: _Progress, size: int, note: str, tree: TreeStore
    ) -> bool:
        assert self._http is not None
        old = progress.cosigned
        for _ in range(MAX_SIZE_RETRIES + 1):
            if old > size:
                # The witness already cosigned a larger tree (another replica's
                # checkpoint): this one cannot be added after it, and need not be.
                progress.cosigned = old
                return False
            proof = [] if old == 0 else await asyncio.to_thread(tree.consistency_proof, old, size)
            body = format_consistency_proof(old, proof, note)
            response = await self._post(witness, body)
            if response.status_code == 200:
                return await self._accept(witness, progress, size, note, response.text)
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                SIZE_MEDIA_TYPE
            ):
                old = _size(witness, response.text)
                progress.cosigned = old
                continue
            if response.status_code in (409, 422):
                raise WitnessFailure(
                    witness.name,
                    "refused",
                    f"refused checkpoint {size} as inconsistent with what it cosigned "
                    f"(HTTP {response.status_code}: {response.text.strip()[:200]}); the log "
                    "may have forked: compare this database with the published checkpoints",
                )
            raise WitnessFailure(
                witness.name,
                "invalid",
                f"answered HTTP {response.status_code}: {response.text.strip()[:200]}",
            )
        raise WitnessFailure(
            witness.name, "invalid", f"its tree size kept changing (last {old}); gave up"
        )

    async def _post(self, witness: WitnessEndpoint, body: str) -> httpx.Response:
        assert self._http is not None
        try:
            response = await self._http.post(
                witness.url.rstrip("/") + ADD_CHECKPOINT,
                content=body.encode("utf-8"),
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=witness.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise WitnessFailure(
                witness.name, "unavailable", f"unreachable at {witness.url}: {exc!r}"
            ) from None
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise WitnessFailure(witness.name, "invalid", "answered more than a cosignature")
        return response

    async def _accept(
        self, witness: WitnessEndpoint, progress: _Progress, size: int, note: str, answer: str
    ) -> bool:
        try:
            [cosignature] = verify_cosignatures(note + answer, [witness.key], minimum=1)
        except NoteError as exc:
            raise WitnessFailure(
                witness.name, "invalid", f"its cosignature does not verify: {exc.message}"
            ) from None
        stored = await asyncio.to_thread(store_cosignature, self._engine, size, cosignature)
        progress.cosigned = progress.stored = size
        WITNESS_COSIGNED_SIZE.labels(witness.name).set(size)
        logger.info("checkpoint %d cosigned by witness %s", size, witness.name)
        return stored


def _size(witness: WitnessEndpoint, text: str) -> int:
    value = text.removesuffix("\n")
    if not (value.isascii() and value.isdigit()) or (len(value) > 1 and value[0] == "0"):
        raise WitnessFailure(witness.name, "invalid", f"answered 409 with size {text[:40]!r}")
    return int(value)
