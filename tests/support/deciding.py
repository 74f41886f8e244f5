"""A `Decider` for tests that build the gateway's parts themselves: the engine behind
the same deadline and queue a gateway's config gives it (gateway.components.build_decider)."""

from __future__ import annotations

from gateway.policy import PolicyEngine
from gateway.policy.decider import Decider, DecisionQueue


def decider_for(engine: PolicyEngine, timeout_s: float = 5.0) -> Decider:
    return Decider(
        engine, timeout_s=timeout_s, queue=DecisionQueue(concurrency=8, size=256, wait_s=timeout_s)
    )
