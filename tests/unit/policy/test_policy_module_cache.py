"""Compiled policy modules kept on disk (gateway.policy.module_cache): a second start
loads what the first compiled; a damaged or foreign entry is compiled again, never
loaded; the sandbox's deadline holds for a loaded module as for a compiled one."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.module_cache import ModuleCache
from gateway.policy.wasm import Limits, PolicyTimeout
from tests.support.clock import SteppingClock
from tests.support.hostile_policy import HOSTILE

MIB = 1 << 20
WAT = '(module (func (export "answer") (result i32) i32.const 42))'


def epoch_engine(epoch: bool = True) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = epoch
    return wasmtime.Engine(config)


def answer(engine: wasmtime.Engine, module: wasmtime.Module) -> int:
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    function = wasmtime.Instance(store, module, []).exports(store)["answer"]
    assert isinstance(function, wasmtime.Func)
    return int(function(store))


@pytest.fixture
def no_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test double: compiling raises, so only a loaded entry can produce a module."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("compiled instead of loading the cached module")

    monkeypatch.setattr(wasmtime.Module, "__init__", refuse)


def wasm() -> bytes:
    return wasmtime.wat2wasm(WAT)


def test_a_module_compiled_once_is_loaded_the_next_time(tmp_path: Path, request) -> None:
    engine = epoch_engine()
    first = ModuleCache(tmp_path / "cache").compile(engine, wasm())
    assert answer(engine, first) == 42
    (entry,) = (tmp_path / "cache").glob("module-*.cwasm")
    assert entry.stat().st_mode & 0o077 == 0  # the user's alone, like the keys

    request.getfixturevalue("no_compiling")
    again = ModuleCache(tmp_path / "cache").compile(engine, wasm())
    assert answer(engine, again) == 42


def test_a_damaged_entry_is_compiled_again_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = epoch_engine()
    cache = ModuleCache(tmp_path)
    cache.compile(engine, wasm())
    (entry,) = tmp_path.glob("module-*.cwasm")
    damaged = bytearray(entry.read_bytes())
    damaged[-100] ^= 0xFF  # inside the native code: only the digest can tell
    entry.write_bytes(bytes(damaged))

    assert answer(engine, cache.compile(engine, wasm())) == 42
    assert "is damaged: compiling again" in caplog.text
    assert entry.read_bytes() != bytes(damaged)  # replaced by an intact entry

    entry.write_bytes(entry.read_bytes()[:1000])  # a torn write
    assert answer(engine, cache.compile(engine, wasm())) == 42


def test_an_entry_for_another_engine_setting_is_compiled_again(tmp_path: Path) -> None:
    # Without epoch interruption the deadline could not stop a runaway evaluation:
    # wasmtime refuses such an artefact for an engine that interrupts, and it is rebuilt.
    ModuleCache(tmp_path).compile(epoch_engine(epoch=False), wasm())
    engine = epoch_engine()
    assert answer(engine, ModuleCache(tmp_path).compile(engine, wasm())) == 42


def test_a_folder_that_cannot_be_written_costs_only_the_compilation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    engine = epoch_engine()
    assert answer(engine, ModuleCache(blocked / "cache").compile(engine, wasm())) == 42
    assert "could not keep the compiled policy module" in caplog.text


def test_a_loaded_policy_module_is_still_interrupted_at_its_deadline(
    tmp_path: Path, request
) -> None:
    (tmp_path / "policy" / "gateway").mkdir(parents=True)
    (tmp_path / "policy" / "gateway" / "p.rego").write_text(HOSTILE)
    # Reports the whole deadline spent computing, whatever the machine's speed.
    limits = Limits(timeout_s=0.05, memory_bytes=2048 * MIB, cpu_clock=SteppingClock(1.0))
    cache = ModuleCache(tmp_path / "cache")
    EmbeddedEngine(tmp_path / "policy", limits=limits, module_cache=cache)

    request.getfixturevalue("no_compiling")
    restarted = EmbeddedEngine(tmp_path / "policy", limits=limits, module_cache=cache)
    with pytest.raises(PolicyTimeout, match="ran past its deadline of 50 ms"):
        restarted.evaluate_sync({"arguments": {"kind": "spin", "text": ""}})
    assert restarted.evaluate_sync({"arguments": {"kind": "fine", "text": ""}}).rule == "fine"
