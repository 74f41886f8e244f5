"""`Decider`: the policy as the gateway asks it — an engine, the decision deadline, and
a bounded queue in front of it.

Two different failures, two different answers (docs/policies.md, "Overload"):

- no decision could be had — it could not *start* in time (every evaluation slot busy
  and the queue full, or no slot free within the wait), or the engine gave no answer
  within the deadline or could not be reached (`gateway.policy.engine.decide`) — is
  `PolicyUnavailable`: the caller gets 503 with ``Retry-After`` (MCP: a JSON-RPC error)
  and the attempt is audited as unavailability, never reported as a policy denial;
- an engine that answered with an error or a malformed result is a deny that says
  so: the policy itself is the problem.

Either way nothing is forwarded (fail closed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from gateway import telemetry
from gateway.errors import NoDecision, PolicyUnavailable
from gateway.metrics import DECISIONS_WAITING
from gateway.policy.engine import RETRY_AFTER_S, PolicyEngine, decide, unavailable
from gateway.types import Decision

__all__ = ["RETRY_AFTER_S", "Decider", "DecisionQueue", "TracedDecider"]


class DecisionQueue:
    """At most ``concurrency`` evaluations at once; at most ``size`` more waiting, each
    for at most ``wait_s``."""

    def __init__(self, *, concurrency: int, size: int, wait_s: float) -> None:
        if concurrency < 1 or size < 0 or wait_s <= 0:
            raise ValueError("a decision queue needs concurrency >= 1, size >= 0, wait_s > 0")
        self._slots = anyio.Semaphore(concurrency)
        self._size = size
        self._wait_s = wait_s
        self._waiting = 0

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Holds an evaluation slot for the block. Raises PolicyUnavailable when the
        queue is full or the wait runs out."""
        if self._slots.value == 0:
            if self._waiting >= self._size:
                raise _unavailable(f"{self._waiting} decisions are already waiting")
            self._waiting += 1
            DECISIONS_WAITING.inc()
            try:
                with anyio.move_on_after(self._wait_s) as waited:
                    await self._slots.acquire()
                if waited.cancelled_caught:
                    raise _unavailable(
                        f"no evaluation could start within {self._wait_s * 1000:.0f} ms"
                    )
            finally:
                self._waiting -= 1
                DECISIONS_WAITING.dec()
        else:
            # A free slot is taken without a turn of the event loop (`acquire` would
            # yield once even then): nothing runs between the check and the taking.
            self._slots.acquire_nowait()
        try:
            yield
        finally:
            self._slots.release()


class Decider:
    """Asks ``engine`` for decisions: queued (`DecisionQueue`), then bounded by the
    deadline ``timeout_s`` from the moment the evaluation starts."""

    def __init__(self, engine: PolicyEngine, *, timeout_s: float, queue: DecisionQueue) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._queue = queue

    @property
    def revision(self) -> str | None:
        return self.engine.revision

    @property
    def revision_follows_policy(self) -> bool:
        return self.engine.revision_follows_policy

    async def decide(self, policy_input: dict[str, Any]) -> Decision:
        """The decision, or a deny that says why it is one (fail closed). Raises
        PolicyUnavailable when no decision could be had: it could not start in time,
        or the engine gave no answer."""
        async with self._queue.turn():
            return await decide(self.engine, policy_input, timeout_s=self.timeout_s)

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str | None]:
        """The engine's raw ``data.gateway.visible`` answer (gateway.policy.listing),
        queued and bounded like a decision. Raises PolicyUnavailable when no answer
        could be had (as for a decision), `PolicyError` for the rest."""
        async with self._queue.turn():
            try:
                with anyio.fail_after(self.timeout_s):
                    return await self.engine.evaluate_list(list_input)
            except TimeoutError:
                why = f"policy engine {self.engine.name} did not answer within "
                raise unavailable(f"{why}{self.timeout_s * 1000:.0f} ms") from None
            except NoDecision as exc:
                raise unavailable(exc.message) from None


class TracedDecider(Decider):
    """A `Decider` whose every decision is a span naming the engine, rule, revision and
    whether it allowed; `components.py` builds it instead while tracing is on
    (gateway/telemetry.py), so that off, deciding costs nothing more."""

    async def decide(self, policy_input: dict[str, Any]) -> Decision:
        with telemetry.span("gateway.policy.decide") as span:
            decision = await super().decide(policy_input)
            if span is not None:
                telemetry.annotate(
                    span,
                    {
                        "gateway.policy.engine": decision.engine,
                        "gateway.policy.rule": decision.rule,
                        "gateway.policy.revision": decision.revision,
                        "gateway.policy.allowed": decision.allow,
                        "gateway.policy.require_approval": decision.require_approval,
                        "gateway.policy.decision_id": decision.decision_id,
                    },
                )
        return decision


def _unavailable(why: str) -> PolicyUnavailable:
    return unavailable(f"the policy engine is overloaded ({why})")
