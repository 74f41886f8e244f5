"""The arithmetic of limits without a database: keys, fixed windows, retry hints, and
how a refusal describes itself."""

from __future__ import annotations

import pytest

from gateway.limits.windows import (
    CONCURRENT_RETRY_S,
    Refusal,
    limit_key,
    window_retry_after,
    window_start,
)
from gateway.types import Limit
from tests.support.clock import FakeClock

PER_MINUTE = Limit("agent-calls", {"principal": "iss agent:a"}, calls=3, window_s=60)


def test_a_key_is_the_name_and_scope_whatever_the_numbers() -> None:
    same = Limit("agent-calls", {"principal": "iss agent:a"}, calls=100, window_s=60)
    assert limit_key(same) == limit_key(PER_MINUTE)
    assert len(limit_key(PER_MINUTE)) == 64 and "agent" not in limit_key(PER_MINUTE)
    other_scope = Limit("agent-calls", {"principal": "iss agent:b"}, calls=3, window_s=60)
    other_name = Limit("tool-calls", {"principal": "iss agent:a"}, calls=3, window_s=60)
    assert len({limit_key(PER_MINUTE), limit_key(other_scope), limit_key(other_name)}) == 3


def test_a_scope_key_and_value_cannot_be_shuffled_into_another() -> None:
    # JCS of [name, scope]: no separator a value could contain.
    a = Limit("x", {"tool": "a", "upstream": "b"}, concurrent=1)
    b = Limit("x", {"tool": 'a","upstream":"b'}, concurrent=1)
    assert limit_key(a) != limit_key(b)


def test_windows_are_aligned_to_the_epoch_and_move_with_the_clock() -> None:
    clock = FakeClock(start=1_000_000.0)  # 1_000_000 = 16666·60 + 40
    assert window_start(clock(), 60) == 999_960.0
    assert window_retry_after(window_start(clock(), 60), 60, clock()) == 20
    clock.advance(19.5)
    assert window_start(clock(), 60) == 999_960.0
    assert window_retry_after(999_960.0, 60, clock()) == 1  # 0.5 s, rounded up
    clock.advance(0.5)
    assert window_start(clock(), 60) == 1_000_020.0
    assert window_retry_after(1_000_020.0, 60, clock()) == 60


def test_retry_after_is_never_zero() -> None:
    # A clock that lags the window's row (another replica started it): at least 1 s.
    assert window_retry_after(1_000_020.0, 60, 1_000_100.0) == 1


@pytest.mark.parametrize(
    ("refusal", "text", "extra"),
    [
        (
            Refusal(PER_MINUTE, "calls", 20),
            "limit 'agent-calls' (3 calls per 60 s) is reached; the call was not executed "
            "— retry after 20 s",
            {"window_s": 60},
        ),
        (
            Refusal(Limit("up", {"upstream": "gh"}, concurrent=2), "concurrent", 1),
            "limit 'up' (2 concurrent calls) is reached; the call was not executed "
            "— retry after 1 s",
            {},
        ),
    ],
)
def test_a_refusal_says_which_limit_and_when(
    refusal: Refusal, text: str, extra: dict[str, int]
) -> None:
    assert refusal.describe() == text
    body = refusal.to_dict()
    assert body["limit"] == refusal.limit.name and body["kind"] == refusal.kind
    assert body["retry_after_s"] == refusal.retry_after_s and body["max"] == refusal.maximum
    assert body["scope"] == refusal.limit.scope
    assert {k: body[k] for k in extra} == extra
    assert ("window_s" in body) == (refusal.kind == "calls")


def test_a_concurrent_refusal_asks_for_a_short_retry() -> None:
    assert CONCURRENT_RETRY_S == 1
