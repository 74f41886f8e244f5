"""The `PolicyEngine` protocol and `decide`, the one fail-closed way to ask it.

Engines may raise or return garbage; `decide` is the boundary where every failure
becomes a deny with a reason, so callers never handle engine errors themselves.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Protocol

import anyio

from gateway.clock import Clock, monotonic
from gateway.errors import PolicyError
from gateway.metrics import DECISION_SECONDS
from gateway.types import FAIL_CLOSED_RULE, Decision, deny

__all__ = ["FAIL_CLOSED_RULE", "PolicyEngine", "decide"]

log = logging.getLogger(__name__)


class PolicyEngine(Protocol):
    """Evaluates ``data.gateway.decision`` for one input document."""

    name: str  # "embedded" or "opa": recorded with every decision

    @property
    def revision(self) -> str | None:
        """The policy revision in force (bundle revision or content hash)."""
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
    """Asks the engine; any error, timeout or malformed result is a deny that says why.
    ``clock`` (`gateway.clock`) tells whether an evaluation that could not be
    interrupted overran the deadline."""
    started = clock()
    try:
        with anyio.fail_after(timeout_s):
            decision = await engine.evaluate(policy_input)
        # An engine that evaluates without yielding (inline) cannot be interrupted by
        # the deadline; a decision that arrives after it is refused all the same.
        if clock() - started > timeout_s:
            raise TimeoutError
        return decision
    except TimeoutError:
        reason = (
            f"policy engine {engine.name} did not answer within {timeout_s * 1000:.0f} ms; "
            "denied (fail closed)"
        )
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
