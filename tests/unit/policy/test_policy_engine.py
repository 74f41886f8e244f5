"""decide(): an engine failure is a deny that says why; no answer is unavailability."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gateway.errors import NoDecision, PolicyError, PolicyUnavailable
from gateway.policy.decision import MalformedDecision, parse_decision
from gateway.policy.engine import FAIL_CLOSED_RULE, decide
from gateway.types import Decision
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

INPUT: dict[str, Any] = {"version": 1, "action": "tools/call"}


class FakeEngine:
    """A collaborator of `decide`: answers with `behaviour(policy_input)`."""

    name = "fake"

    def __init__(
        self, behaviour: Any, revision: str | None = "rev-7", *, inline: bool = False
    ) -> None:
        self.evaluates_inline = inline
        self._behaviour = behaviour
        self._revision = revision
        self.seen: list[dict[str, Any]] = []

    @property
    def revision(self) -> str | None:
        return self._revision

    revision_follows_policy = True

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        self.seen.append(policy_input)
        return await self._behaviour(policy_input)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def valid(_: dict[str, Any]) -> Decision:
    return parse_decision(
        {"allow": True, "reasons": ["ok"], "rule": "grant"}, engine="fake", revision="rev-7"
    )


async def policy_error(_: dict[str, Any]) -> Decision:
    raise PolicyError("policy evaluation failed: to_number: invalid number")


async def malformed(_: dict[str, Any]) -> Decision:
    return parse_decision({"allow": "true"}, engine="fake", revision="rev-7")


async def runtime_error(_: dict[str, Any]) -> Decision:
    raise RuntimeError("engine bug")


async def key_error(_: dict[str, Any]) -> Decision:
    return {}["allow"]  # type: ignore[no-any-return]


async def never_answers(_: dict[str, Any]) -> Decision:
    await anyio.sleep_forever()  # only the deadline can end this evaluation
    raise AssertionError("unreachable")


def assert_fail_closed(decision: Decision) -> None:
    assert decision.allow is False
    assert decision.require_approval is False
    assert not decision.permits_now
    assert decision.rule == FAIL_CLOSED_RULE
    assert decision.engine == "fake"
    assert decision.revision == "rev-7"
    assert len(decision.reasons) == 1
    assert decision.reasons[0].endswith("denied (fail closed)")


async def test_valid_decision_passes_through() -> None:
    engine = FakeEngine(valid)
    decision = await decide(engine, INPUT, timeout_s=1)
    assert decision.allow is True
    assert decision.rule == "grant"
    assert decision.reasons == ("ok",)
    assert decision.engine == "fake"
    assert engine.seen == [INPUT]


async def test_policy_error_is_a_deny_carrying_its_message() -> None:
    decision = await decide(FakeEngine(policy_error), INPUT, timeout_s=1)
    assert_fail_closed(decision)
    assert "to_number: invalid number" in decision.reasons[0]


async def test_malformed_result_is_a_deny_saying_so() -> None:
    decision = await decide(FakeEngine(malformed), INPUT, timeout_s=1)
    assert_fail_closed(decision)
    assert "malformed" in decision.reasons[0]
    assert "allow" in decision.reasons[0]


@pytest.mark.parametrize(
    ("behaviour", "kind"), [(runtime_error, "RuntimeError"), (key_error, "KeyError")]
)
async def test_unexpected_exception_is_a_deny_naming_its_type(behaviour: Any, kind: str) -> None:
    decision = await decide(FakeEngine(behaviour), INPUT, timeout_s=1)
    assert_fail_closed(decision)
    assert f"policy engine error ({kind})" in decision.reasons[0]


async def test_timeout_is_unavailable_naming_the_limit() -> None:
    with pytest.raises(PolicyUnavailable, match="did not answer within 50 ms") as refused:
        await decide(FakeEngine(never_answers), INPUT, timeout_s=0.05)
    assert "nothing was decided" in refused.value.message
    assert refused.value.retry_after_s == 1


async def test_an_engine_that_gives_no_answer_is_unavailable_with_its_reason() -> None:
    async def unreachable(_: dict[str, Any]) -> Decision:
        raise NoDecision("OPA at http://127.0.0.1:1 is unreachable: connection refused")

    with pytest.raises(PolicyUnavailable, match="unreachable: connection refused"):
        await decide(FakeEngine(unreachable), INPUT, timeout_s=1)


@pytest.mark.parametrize("inline", [False, True], ids=["scoped", "declared-inline"])
async def test_an_allow_that_arrives_after_the_deadline_is_refused_as_unavailable(
    inline: bool,
) -> None:
    clock = FakeClock()

    async def blocks_without_yielding(_: dict[str, Any]) -> Decision:
        clock.advance(0.1)  # an inline evaluation, which the deadline cannot interrupt
        return await valid(_)

    engine = FakeEngine(blocks_without_yielding, inline=inline)
    with pytest.raises(PolicyUnavailable, match="did not answer within 20 ms"):
        await decide(engine, INPUT, timeout_s=0.02, clock=clock)


async def test_an_allow_within_the_deadline_stands() -> None:
    clock = FakeClock()

    async def just_in_time(_: dict[str, Any]) -> Decision:
        clock.advance(0.02)
        return await valid(_)

    decision = await decide(FakeEngine(just_in_time), INPUT, timeout_s=0.02, clock=clock)
    assert decision.allow is True


async def test_engine_without_revision_still_names_itself() -> None:
    decision = await decide(FakeEngine(policy_error, revision=None), INPUT, timeout_s=1)
    assert decision.allow is False
    assert decision.engine == "fake"
    assert decision.revision is None
    assert decision.rule == FAIL_CLOSED_RULE


async def test_malformed_decision_error_type_is_caught_as_policy_error() -> None:
    # decide() relies on MalformedDecision being a PolicyError to report its message.
    async def raise_malformed(_: dict[str, Any]) -> Decision:
        raise MalformedDecision("policy result is undefined (no data.gateway.decision)")

    decision = await decide(FakeEngine(raise_malformed), INPUT, timeout_s=1)
    assert_fail_closed(decision)
    assert "undefined" in decision.reasons[0]
