"""The `PolicyEngine` protocol and `decide`, the one fail-closed way to ask it.

Engines may raise or return garbage; `decide` is the boundary where every failure
becomes one of two answers, so callers never handle engine errors themselves:

- the engine answered, but not with a valid decision (an evaluation error, an
  undefined or malformed result, the memory cap, an embedded evaluation that computed
  for its whole deadline): a deny that says why;
- the engine gave no answer (unreachable, none within the deadline, or starved of CPU
  until it: `NoDecision`): `PolicyUnavailable`, answered 503 with ``Retry-After`` — on
  a starved machine a sound policy overruns its deadline too, and load must never
  read as a denial (ADR 0032).

Either way nothing is forwarded (fail closed).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Protocol

import anyio

from gateway.clock import Clock, monotonic
from gateway.errors import NoDecision, PolicyError, PolicyUnavailable
from gateway.metrics import DECISION_SECONDS, POLICY_UNAVAILABLE
from gateway.types import FAIL_CLOSED_RULE, Decision, deny

__all__ = ["FAIL_CLOSED_RULE", "RETRY_AFTER_S", "PolicyEngine", "decide", "unavailable"]

# What a caller refused for unavailability is told to wait before trying again.
RETRY_AFTER_S = 1

log = logging.getLogger(__name__)


class PolicyEngine(Protocol):
    """Evaluates ``data.gateway.decision`` for one input document."""

    name: str  # "embedded" or "opa": recorded with every decision
    # `evaluate` never yields to the event loop (the embedded engine: its sandbox has
    # a deadline of its own). `decide` then sets no deadline scope, which could not
    # interrupt it anyway and cost a timer per decision; it checks the time after.
    evaluates_inline: bool

    @property
    def revision(self) -> str | None:
        """The policy revision in force (bundle revision or content hash)."""
        ...

    @property
    def revision_follows_policy(self) -> bool:
        """Whether `revision` changes whenever the policy or its data does. Where it
        does not (an OPA server without bundles), nothing may be kept per revision:
        a list is asked every time, a live subscription is decided at every update."""
        ...

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        """Returns a parsed decision; raises `PolicyError` on any failure."""
        ...

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str | None]:
        """The raw ``data.gateway.visible`` for a list input and the revision that
        answered (gateway.policy.listing); raises `PolicyError`, `ListUnsupported` when
        the policy has no such rule."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


async def decide(
    engine: PolicyEngine,
    policy_input: dict[str, Any],
    *,
    timeout_s: float,
    clock: Clock = monotonic,
) -> Decision:
    """Asks the engine; an error or malformed result is a deny that says why. Raises
    `PolicyUnavailable` when no answer came: a timeout or an unreachable engine.
    ``clock`` (`gateway.clock`) tells whether an evaluation that could not be
    interrupted overran the deadline."""
    started = clock()
    try:
        if engine.evaluates_inline:
            decision = await engine.evaluate(policy_input)
        else:
            with anyio.fail_after(timeout_s):
                decision = await engine.evaluate(policy_input)
        # An engine that evaluates without yielding (inline) cannot be interrupted by
        # the deadline; a decision that arrives after it is refused all the same.
        if clock() - started > timeout_s:
            raise TimeoutError
        return decision
    except TimeoutError:
        raise unavailable(
            f"policy engine {engine.name} did not answer within {timeout_s * 1000:.0f} ms"
        ) from None
    except NoDecision as exc:
        raise unavailable(exc.message) from None
    except PolicyError as exc:
        reason = f"{exc.message}; denied (fail closed)"
    except Exception as exc:  # an engine bug must still deny, never propagate as allow
        log.exception("policy engine %s failed", engine.name)
        reason = f"policy engine error ({type(exc).__name__}); denied (fail closed)"
    finally:
        DECISION_SECONDS.observe(clock() - started)
    log.warning("policy failure: %s", reason)
    return replace(
        deny(reason, engine=engine.name, revision=engine.revision), rule=FAIL_CLOSED_RULE
    )


def unavailable(why: str) -> PolicyUnavailable:
    """The refusal for a decision that could not be had (counted in
    ``gateway_policy_unavailable_total``)."""
    POLICY_UNAVAILABLE.inc()
    log.warning("policy unavailable: %s", why)
    return PolicyUnavailable(
        f"{why}; nothing was decided or executed, retry in {RETRY_AFTER_S} s",
        retry_after_s=RETRY_AFTER_S,
    )
