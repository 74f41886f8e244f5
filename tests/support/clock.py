"""A clock the test moves by hand, for code that takes a `gateway.clock.Clock`."""

from __future__ import annotations

import threading


class FakeClock:
    """Stands still until `advance` moves it; safe to read and move from any thread
    (the audit log reads it on its writer thread too). Counts its readings, for tests
    that need to know the code under test has looked at the time again."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.readings = 0

    def __call__(self) -> float:
        with self._lock:
            self.readings += 1
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._lock:
            self._now += seconds


class SteppingClock:
    """Moves ``step`` seconds at every reading: for code that measures how long
    something ran between two readings (the CPU time of a policy evaluation, say),
    so that it sees exactly ``step`` whatever the machine's speed."""

    def __init__(self, step: float, start: float = 0.0) -> None:
        self._now = start
        self._step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self._now += self._step
            return self._now
