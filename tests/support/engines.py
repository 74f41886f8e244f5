"""Policy engines that are explicit test doubles, for the tests of what the gateway
does around an engine (its queue, its deadline), where a real engine cannot be held
still on purpose."""

from __future__ import annotations

from typing import Any

import anyio

from gateway.policy.decision import parse_decision
from gateway.types import Decision


class GatedEngine:
    """Answers "allow" once `release` is set; counts evaluations that started."""

    name = "gated"
    evaluates_inline = False
    revision = "rev-1"
    revision_follows_policy = True

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started = 0
        self.one_started = anyio.Event()

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        self.started += 1
        self.one_started.set()
        await self.release.wait()
        return parse_decision({"allow": True, "reasons": ["ok"]}, engine="gated", revision="rev-1")

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str | None]:
        self.started += 1
        self.one_started.set()
        await self.release.wait()
        return {"visible": []}, self.revision

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
