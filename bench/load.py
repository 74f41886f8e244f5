"""One bounded load run: ``concurrency`` callers until a call count or a time limit.

Every run is bounded twice: no new call starts after ``max_calls`` calls or
``max_seconds``, and calls still in flight ``grace_s`` after that are cancelled and
counted as unfinished (a server that stops answering cannot hold the bench). Each
call has its own timeout as well. Around the run, the CPU time of the named process
trees (the middle process, the upstream) and of this client process is read, so that
CPU per call comes from the same calls as the latency and the throughput.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio

from bench import proc_cpu
from bench.clients import OK, Caller, is_policy_denial
from bench.stats import per_call_ms, percentile


@dataclass
class RunResult:
    concurrency: int
    started: int = 0
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)  # every completed call
    ok_latencies: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process tree, and "client"

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return self.kinds[OK]

    @property
    def unfinished(self) -> int:
        return self.started - self.completed

    def ok_per_s(self) -> float | None:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else None

    def cpu_ms_per_call(self, name: str) -> float | None:
        """CPU of one process tree per *completed* call (a failed call costs too)."""
        return per_call_ms(self.cpu_s[name], self.completed) if name in self.cpu_s else None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "concurrency": self.concurrency,
            "started": self.started,
            "completed": self.completed,
            "ok": self.ok,
            "unfinished": self.unfinished,
            "success_share": round(self.ok / self.started, 4) if self.started else None,
            "policy_denials": sum(n for k, n in self.kinds.items() if is_policy_denial(k)),
            "kinds": dict(self.kinds),
            "elapsed_s": round(self.elapsed_s, 3),
            "ok_per_s": _round(self.ok_per_s(), 1),
            "cpu_ms_per_call": {k: _round(self.cpu_ms_per_call(k), 3) for k in self.cpu_s},
        }
        if self.latencies:
            out["p50_ms"] = round(percentile(self.latencies, 0.5) * 1000, 3)
            out["p99_ms"] = round(percentile(self.latencies, 0.99) * 1000, 3)
        if self.ok_latencies:
            out["ok_p50_ms"] = round(percentile(self.ok_latencies, 0.5) * 1000, 3)
            out["ok_p99_ms"] = round(percentile(self.ok_latencies, 0.99) * 1000, 3)
        return out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


async def run(
    caller: Caller,
    *,
    concurrency: int,
    max_calls: int,
    max_seconds: float,
    grace_s: float = 20.0,
    call_timeout_s: float = 30.0,
    measure: dict[str, int] | None = None,
    rate: float | None = None,
) -> RunResult:
    """Runs the load; ``measure`` names the process trees (name → pid) whose CPU to read.
    With ``rate``, calls start on a fixed schedule of ``rate`` a second (still at most
    ``concurrency`` in flight): gateways compared at one rate do the same work per
    second, whatever the machine's load lets each reach on its own."""
    result = RunResult(concurrency)
    pids = measure or {}
    deadline = time.perf_counter() + max_seconds
    first = time.perf_counter()

    async def worker() -> None:
        while result.started < max_calls and time.perf_counter() < deadline:
            if rate is not None:
                due = first + result.started / rate
                result.started += 1
                await anyio.sleep(max(0.0, due - time.perf_counter()))
                if time.perf_counter() >= deadline:
                    result.started -= 1
                    return
            else:
                result.started += 1
            began = time.perf_counter()
            with anyio.move_on_after(call_timeout_s) as scope:
                kind = await caller()
            if scope.cancelled_caught:
                kind = "timeout"
            took = time.perf_counter() - began
            result.latencies.append(took)
            result.kinds[kind] += 1
            if kind == OK:
                result.ok_latencies.append(took)

    before = proc_cpu.cpu_seconds(list(pids.values()))
    client_before = time.process_time()
    began = time.perf_counter()
    with anyio.move_on_after(max_seconds + grace_s):
        async with anyio.create_task_group() as tasks:
            for _ in range(concurrency):
                tasks.start_soon(worker)
    result.elapsed_s = time.perf_counter() - began
    client_cpu = time.process_time() - client_before
    after = proc_cpu.cpu_seconds(list(pids.values()))
    result.cpu_s = {name: after[pid] - before[pid] for name, pid in pids.items()}
    result.cpu_s["client"] = client_cpu
    return result


async def warm(caller: Caller, calls: int) -> Counter[str]:
    """A few calls before measuring: connections, caches, the first-call paths."""
    kinds: Counter[str] = Counter()
    for _ in range(calls):
        with anyio.move_on_after(30):
            kinds[await caller()] += 1
    return kinds


async def wait_quiet(pids: list[int], *, busy_share: float = 0.05, timeout_s: float = 120) -> float:
    """Waits until the processes use less than ``busy_share`` of a core over half a
    second (startup work done: migrations, a checkpoint over a prefilled log);
    returns the seconds waited (bounded by ``timeout_s``)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        before = sum(proc_cpu.cpu_seconds(pids).values())
        await anyio.sleep(0.5)
        if sum(proc_cpu.cpu_seconds(pids).values()) - before < busy_share * 0.5:
            break
    return time.perf_counter() - began
