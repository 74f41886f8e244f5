"""Hostile policies on the embedded engine: each is a clean deny, and the engine goes on
serving. The Wasm sandbox bounds every evaluation in time (an epoch deadline) and
memory (a page cap); an instance that trapped is dropped, never reused."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from gateway.errors import PolicyLoadError, PolicyUnavailable
from gateway.policy import wasm_module
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import FAIL_CLOSED_RULE, decide
from gateway.policy.wasm import (
    Limits,
    MissingBuiltins,
    PolicyOutOfMemory,
    PolicyStarved,
    PolicyTimeout,
    WasmModule,
)
from gateway.policy.wasm_module import data_end
from tests.support.clock import FakeClock, SteppingClock
from tests.support.hostile_policy import HOSTILE
from tests.support.waiting import eventually

MIB = 1 << 20


def engine(tmp_path: Path, limits: Limits) -> EmbeddedEngine:
    (tmp_path / "gateway").mkdir(exist_ok=True)
    (tmp_path / "gateway" / "p.rego").write_text(HOSTILE)
    return EmbeddedEngine(tmp_path, limits=limits)


def ask(target: EmbeddedEngine, kind: str, text: str = "") -> str | None:
    return target.evaluate_sync({"arguments": {"kind": kind, "text": text}}).rule


def test_a_catastrophic_regex_over_a_megabyte_is_decided_in_linear_time(tmp_path: Path) -> None:
    # RE2, compiled into the module: no backtracking, so the deny is the rule's own.
    target = engine(tmp_path, Limits(timeout_s=30, memory_bytes=256 * MIB))
    assert ask(target, "regex", "a" * MIB + "!") == "default_deny"
    assert ask(target, "regex", "a" * MIB) == "regex"


# The CPU time an evaluation reports, whatever the machine's speed: all of its deadline
# (it computed all along), or none (it waited for a core all along).
RAN = SteppingClock(1.0)
STARVED = FakeClock()


def test_a_runaway_evaluation_is_interrupted_at_its_deadline(tmp_path: Path) -> None:
    # Memory to spare: only the deadline can stop it.
    target = engine(tmp_path, Limits(timeout_s=0.05, memory_bytes=2048 * MIB, cpu_clock=RAN))
    with pytest.raises(PolicyTimeout, match="ran past its deadline of 50 ms"):
        ask(target, "spin")
    assert ask(target, "fine") == "fine"


def test_the_epoch_thread_parks_when_idle_and_a_deadline_still_fires_after(
    tmp_path: Path,
) -> None:
    # The epoch advances only while evaluations run (an idle gateway spent ≈ 8 ms of
    # CPU per second ticking): once idle, the thread parks; the next evaluation wakes
    # it, and a runaway one is still interrupted at its deadline.
    target = engine(tmp_path, Limits(timeout_s=0.05, memory_bytes=2048 * MIB, cpu_clock=RAN))
    assert ask(target, "fine") == "fine"
    eventually(lambda: wasm_module.EPOCH._parked, "the epoch thread parked once idle")
    with pytest.raises(PolicyTimeout, match="ran past its deadline of 50 ms"):
        ask(target, "spin")
    eventually(lambda: wasm_module.EPOCH._parked, "the epoch thread parked again")
    assert wasm_module.EPOCH._running == 0
    assert ask(target, "fine") == "fine"


def test_an_evaluation_starved_of_cpu_until_its_deadline_gave_no_answer(tmp_path: Path) -> None:
    target = engine(tmp_path, Limits(timeout_s=0.05, memory_bytes=2048 * MIB, cpu_clock=STARVED))
    with pytest.raises(PolicyStarved, match="deadline of 50 ms after only 0 ms on the CPU"):
        ask(target, "spin")
    assert ask(target, "fine") == "fine"


def test_allocating_until_the_cap_is_stopped(tmp_path: Path) -> None:
    target = engine(tmp_path, Limits(timeout_s=30, memory_bytes=64 * MIB))
    with pytest.raises(PolicyOutOfMemory, match="memory cap of 64 MiB"):
        ask(target, "alloc", "x" * MIB)
    assert ask(target, "fine") == "fine"


def test_an_input_larger_than_the_memory_cap_is_refused_before_the_policy_runs(
    tmp_path: Path,
) -> None:
    # The input is written where the heap begins, growing the memory to hold it: past
    # the cap, the growth fails, and that is a clean deny like any allocation past it.
    target = engine(tmp_path, Limits(timeout_s=30, memory_bytes=8 * MIB))
    with pytest.raises(PolicyOutOfMemory, match="memory cap of 8 MiB"):
        ask(target, "fine", "x" * (9 * MIB))
    assert ask(target, "fine", "x" * MIB) == "fine"  # grown, within the cap
    assert ask(target, "fine") == "fine"


def test_an_instance_that_failed_is_never_reused(tmp_path: Path) -> None:
    target = engine(tmp_path, Limits(timeout_s=30, memory_bytes=64 * MIB))
    idle = target.compiled._idle
    assert ask(target, "fine") == "fine"
    (instance,) = idle
    with pytest.raises(PolicyOutOfMemory):
        ask(target, "alloc", "x" * MIB)
    assert idle == []  # the one that trapped is gone...
    assert ask(target, "fine") == "fine"
    assert len(idle) == 1 and idle[0] is not instance  # ...and a fresh one serves


@pytest.mark.anyio
async def test_hostile_evaluations_fail_closed_saying_why(tmp_path: Path) -> None:
    # Each limit alone: the deadline with memory to spare, the cap with time to spare.
    slow = engine(tmp_path, Limits(timeout_s=0.05, memory_bytes=2048 * MIB, cpu_clock=RAN))
    greedy = engine(tmp_path, Limits(timeout_s=30, memory_bytes=64 * MIB))
    # The deadline spent computing and the memory cap are the policy's own doing:
    # denies that say so.
    timed_out = await decide(slow, {"arguments": {"kind": "spin"}}, timeout_s=30)
    arguments = {"kind": "alloc", "text": "x" * MIB}
    out_of_memory = await decide(greedy, {"arguments": arguments}, timeout_s=30)
    for decision, why in [(timed_out, "deadline"), (out_of_memory, "memory cap")]:
        assert decision.allow is False
        assert decision.rule == FAIL_CLOSED_RULE
        assert why in decision.reasons[0] and "fail closed" in decision.reasons[0]
    # The deadline spent waiting for a core gave no answer: unavailable, not denied.
    starved = engine(tmp_path, Limits(timeout_s=0.05, memory_bytes=2048 * MIB, cpu_clock=STARVED))
    with pytest.raises(PolicyUnavailable, match="on the CPU") as refused:
        await decide(starved, {"arguments": {"kind": "spin"}}, timeout_s=30)
    assert refused.value.retry_after_s == 1
    assert (await decide(slow, {"arguments": {"kind": "fine"}}, timeout_s=30)).allow
    assert (await decide(greedy, {"arguments": {"kind": "fine"}}, timeout_s=30)).allow


def test_a_policy_needing_host_builtins_is_refused_at_load(tmp_path: Path) -> None:
    # OPA's Wasm leaves sprintf to the host; the gateway runs no policy code outside
    # the sandbox, so such a policy never serves.
    (tmp_path / "p.rego").write_text(
        'package gateway\n\nimport rego.v1\n\ndecision := {"allow": true, '
        '"reasons": [sprintf("%v", [input.x])]}\n'
    )
    with pytest.raises(MissingBuiltins, match="does not provide: sprintf") as caught:
        EmbeddedEngine(tmp_path)
    assert isinstance(caught.value, PolicyLoadError)
    assert "policy.engine: opa" in caught.value.message


def test_data_larger_than_the_memory_cap_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text(
        'package gateway\n\nimport rego.v1\n\ndecision := {"allow": count(data.big) > 0}\n'
    )
    (tmp_path / "data.json").write_text('{"big": ["' + "x" * (4 * MIB) + '"]}')
    with pytest.raises(PolicyLoadError, match="does not fit the memory cap of 2 MiB"):
        EmbeddedEngine(tmp_path, limits=Limits(timeout_s=30, memory_bytes=2 * MIB))
    assert EmbeddedEngine(tmp_path, limits=Limits(timeout_s=30, memory_bytes=64 * MIB))


def test_memory_is_sized_by_the_data_segments_not_the_declared_minimum() -> None:
    # opa build declares 2 pages of memory whatever its data; once the shipped
    # policy's constants passed 128 KiB, instantiating a memory of the declared size
    # trapped. A module that declares 1 page and places data in its third:
    binary = wasmtime.wat2wasm(
        '(module (import "env" "memory" (memory 1))'
        ' (data (i32.const 16) "head") (data (i32.const 131070) "0123456789"))'
    )
    assert data_end(bytes(binary)) == 131080
    module = WasmModule(bytes(binary))
    assert module.min_pages == 3
    engine = wasm_module.EPOCH.engine  # the one engine every policy module is compiled by
    for pages, fits in ((2, False), (module.min_pages, True)):
        store = wasmtime.Store(engine)
        store.set_epoch_deadline(1 << 40)
        linker = wasmtime.Linker(engine)
        memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(pages, 16)))
        linker.define(store, "env", "memory", memory)
        if fits:
            linker.instantiate(store, module.module)
        else:
            with pytest.raises(wasmtime.Trap, match="out of bounds"):
                linker.instantiate(store, module.module)
