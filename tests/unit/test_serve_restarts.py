"""When `gateway serve --processes N` replaces a server process (gateway.cli.restarts):
at once the first time, with doubling backoff after, and never beyond
`server.restarts.limit` exits of one slot within the window. Time moves by hand."""

from __future__ import annotations

import pytest

from gateway.cli.restarts import CrashLoop, ProcessFailed, Restarts
from gateway.config import RestartsConfig, parse_config
from tests.support.clock import FakeClock


def restarts(clock: FakeClock, **config: float) -> Restarts:
    return Restarts(RestartsConfig(**config), clock)  # type: ignore[arg-type]


def test_the_defaults_are_in_the_server_section() -> None:
    loaded = parse_config(
        {
            "identity": {"issuers": [{"issuer": "https://i", "jwks_url": "https://i/jwks"}]},
            "server": {"processes": 2, "restarts": {"limit": 2, "window_s": 60}},
        }
    )
    assert loaded.server.restarts.limit == 2
    assert loaded.server.restarts.backoff_s == RestartsConfig().backoff_s
    assert RestartsConfig().limit == 5 and RestartsConfig().window_s == 300


def test_the_first_replacement_is_at_once_then_the_wait_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    slots = restarts(clock, limit=10, window_s=1000, backoff_s=1, backoff_max_s=5)
    delays = [slots.exited(0, "signal SIGKILL") for _ in range(6)]
    assert delays == [0, 1, 2, 4, 5, 5]


def test_beyond_the_limit_the_serve_stops_naming_the_slot_and_its_exits() -> None:
    clock = FakeClock()
    slots = restarts(clock, limit=2, window_s=60, backoff_s=0)
    slots.exited(1, "signal SIGKILL")
    slots.exited(1, "exit code 3")
    slots.exited(0, "exit code 1")  # another slot has its own count
    with pytest.raises(CrashLoop) as caught:
        slots.exited(1, "signal SIGSEGV")
    message = str(caught.value)
    assert "gateway process 1 exited 3 times within 60 s" in message
    assert "signal SIGKILL, exit code 3, signal SIGSEGV" in message
    assert "server.restarts.limit" in message
    assert isinstance(caught.value, ProcessFailed)  # the serve stops as for a failed start


def test_exits_older_than_the_window_no_longer_count() -> None:
    clock = FakeClock()
    slots = restarts(clock, limit=1, window_s=60, backoff_s=2)
    assert slots.exited(0, "signal SIGKILL") == 0
    clock.advance(60)
    # The earlier exit left the window: this one is a first again.
    assert slots.exited(0, "signal SIGKILL") == 0
    clock.advance(59)
    with pytest.raises(CrashLoop):
        slots.exited(0, "signal SIGKILL")


def test_a_limit_of_zero_never_replaces() -> None:
    with pytest.raises(CrashLoop):
        restarts(FakeClock(), limit=0).exited(0, "signal SIGKILL")
