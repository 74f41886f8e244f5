"""A compiled OPA policy module, and the one wasmtime engine every module is compiled by.

The engine has epoch interruption on; a daemon thread advances its epoch every
`EPOCH_TICK_S` while evaluations run (`gateway.policy.wasm` arms each evaluation's
deadline in whole ticks). The module is validated and sized once and instantiated per
sandbox (`gateway.policy.wasm.WasmInstance`).
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

import wasmtime

from gateway.errors import PolicyLoadError

if TYPE_CHECKING:
    from gateway.policy.module_cache import ModuleCache

PAGE_BYTES = 64 * 1024
EPOCH_TICK_S = 0.005
# Ticks with no evaluation after which the epoch thread parks (0.1 s): long enough
# that a gateway serving calls never parks it between two (a wake-up per evaluation
# cost more than the ticks it saved), short enough that an idle one soon does.
PARK_AFTER_TICKS = 20


class _Epoch:
    """The process-wide engine and the thread that advances its epoch.

    The thread ticks only while evaluations come: it parks once `PARK_AFTER_TICKS`
    ticks passed with none running and none begun, and the next evaluation wakes it.
    Ticking without pause cost an idle gateway ≈ 5–8 ms of CPU a second (200 wake-ups,
    each taking the GIL from whatever ran; docs/decisions/0039). An evaluation's
    deadline counts ticks from its own start, so a parked thread delays no deadline:
    the first tick after a wake-up comes a whole `EPOCH_TICK_S` later, as
    `deadline_ticks` already allows for a tick just after arming.
    """

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        # Guarded by _lock: evaluations running now, whether one began since the last
        # tick, whether the thread waits for one.
        self._running = 0
        self._began = False
        self._parked = False

    def ensure_ticking(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="policy-epoch", daemon=True)
                self._thread.start()

    def begin(self) -> None:
        """An evaluation starts: the epoch must advance until it ends (`end`)."""
        with self._lock:
            self._running += 1
            self._began = True
            if self._parked:
                self._parked = False
                self._wake.notify()

    def end(self) -> None:
        with self._lock:
            self._running -= 1

    def _tick(self) -> None:
        idle_ticks = 0
        while True:
            with self._lock:
                idle_ticks = 0 if self._running or self._began else idle_ticks + 1
                self._began = False
                # Parks only after `PARK_AFTER_TICKS` ticks with nothing running and
                # nothing begun: under a steady stream of calls it ticks as before,
                # with no wake-up per evaluation; an idle process parks it.
                if idle_ticks >= PARK_AFTER_TICKS:
                    self._parked = True
                    while self._parked:  # `begin` clears it
                        self._wake.wait()
                    idle_ticks = 0
            time.sleep(EPOCH_TICK_S)
            self.engine.increment_epoch()


EPOCH = _Epoch()


def deadline_ticks(seconds: float) -> int:
    """Whole ticks covering ``seconds``, plus one: a deadline armed just before a tick
    must not fire early."""
    return max(1, math.ceil(seconds / EPOCH_TICK_S)) + 1


class WasmModule:
    """A compiled policy: validated once, instantiated many times. With a ``cache``,
    compiled once per module and wasmtime version (gateway.policy.module_cache)."""

    def __init__(self, wasm: bytes, cache: ModuleCache | None = None) -> None:
        try:
            if cache is None:
                self.module = wasmtime.Module(EPOCH.engine, wasm)
            else:
                self.module = cache.compile(EPOCH.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise PolicyLoadError(f"policy.wasm is not a valid WebAssembly module: {exc}") from None
        memory = [
            i.type
            for i in self.module.imports
            if (i.module, i.name) == ("env", "memory") and isinstance(i.type, wasmtime.MemoryType)
        ]
        if not memory:
            raise PolicyLoadError(
                "policy.wasm does not import env.memory: not an OPA policy module"
            )
        # The pages the module needs before it runs (its data segments live there).
        # Not only what it declares: opa build declares 2 pages whatever its data, so
        # a policy whose constants pass 128 KiB would trap as it is instantiated.
        needed = math.ceil(data_end(wasm) / PAGE_BYTES)
        self.min_pages = max(2, memory[0].limits.min, needed)


def data_end(wasm: bytes) -> int:
    """The end of the module's furthest active data segment placed at a constant
    offset (0 if none): the linear memory must reach it before the module can start.
    Reads the binary's sections (WebAssembly core §5.5); a module wasmtime accepted."""

    def leb(at: int, *, signed: bool = False) -> tuple[int, int]:
        """The LEB128 number at ``at`` and the offset after it."""
        value = shift = 0
        while True:
            byte = wasm[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if signed and byte & 0x40:
                    value -= 1 << shift
                return value, at

    def uleb(at: int) -> tuple[int, int]:
        return leb(at)

    def sleb(at: int) -> tuple[int, int]:
        return leb(at, signed=True)

    end, at = 0, 8  # after the magic and version
    while at < len(wasm):
        section = wasm[at]
        size, body = uleb(at + 1)
        at = body + size
        if section != 11:  # the data section
            continue
        count, cursor = uleb(body)
        for _ in range(count):
            flags, cursor = uleb(cursor)
            if flags == 1:  # passive: copied by memory.init, not at start
                length, cursor = uleb(cursor)
                cursor += length
                continue
            if flags == 2:
                _memory, cursor = uleb(cursor)
            opcode = wasm[cursor]
            offset, cursor = sleb(cursor + 1)
            while wasm[cursor] != 0x0B:  # the end of the offset expression
                cursor += 1
            length, cursor = uleb(cursor + 1)
            cursor += length
            if opcode == 0x41:  # i32.const
                end = max(end, offset + length)
    return end
