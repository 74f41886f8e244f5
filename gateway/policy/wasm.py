"""OPA's WebAssembly ABI on wasmtime: the sandboxed instances of a compiled policy
module (`gateway.policy.wasm_module`).

A policy compiled by ``opa build -t wasm`` is a Wasm module that imports its linear
memory (``env.memory``), an abort hook (``env.opa_abort``) and the built-ins it leaves
to the host (``env.opa_builtin0``…``4``), and exports the evaluator: ``opa_malloc``,
``opa_json_parse``, ``opa_heap_ptr_get`` and ``opa_eval`` (ABI 1.2+), which
takes the input as JSON text and returns the result set as NUL-terminated JSON.

Why the sandbox holds (docs/decisions/0013):
- **Time.** Every module is compiled by one process-wide engine with epoch
  interruption (`wasm_module.EPOCH`); a daemon thread advances the epoch every tick while
  evaluations run, and each evaluation arms a deadline of whole ticks. A runaway
  evaluation traps at the deadline wherever it is (wasmtime checks the epoch in every
  loop and function entry), and no host code runs inside an evaluation. The deadline
  is wall time, so a starved evaluation reaches it too: one that had less than
  `SPENT_SHARE` of it on the CPU is `PolicyStarved` (no answer: unavailable), one that
  used it is `PolicyTimeout` (the policy's own cost: a deny; ADR 0032).
- **Memory.** An instance's memory is created with a maximum page count; OPA's
  allocator aborts when ``memory.grow`` fails, which traps.
- **No host built-ins.** A module that needs a built-in from the host is refused at
  load (`MissingBuiltins`): nothing outside the sandbox runs on policy's behalf.
- **Poison.** An instance whose evaluation trapped (deadline, memory, abort) may hold
  a half-written heap: it is dropped, never reused. One whose memory grew past
  `RECYCLE_BYTES` is dropped after its evaluation too, so one large input does not pin
  its memory for good.

Instances are not thread-safe; `WasmPolicy` hands each evaluation an idle instance of
its own (list pop/append are atomic under the GIL) and makes a new one when none is
idle. The compiled module is shared.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi
from wasmtime._func import enter_wasm

from gateway.clock import Clock, thread_cpu
from gateway.errors import NoDecision, PolicyError, PolicyLoadError
from gateway.policy.wasm_module import EPOCH, PAGE_BYTES, WasmModule, deadline_ticks

__all__ = [
    "RECYCLE_BYTES",
    "Limits",
    "MissingBuiltins",
    "PolicyOutOfMemory",
    "PolicyStarved",
    "PolicyTimeout",
    "PolicyTrap",
    "WasmInstance",
    "WasmModule",
]

# An instance whose memory grew past this is dropped after its evaluation.
RECYCLE_BYTES = 64 << 20
# An evaluation interrupted at its deadline after at least this share of it on the CPU
# ran that long: the policy's own cost. With less, it mostly waited for a core.
SPENT_SHARE = 0.5
# A deadline that never fires: set while loading data, outside any evaluation.
_NO_DEADLINE = 1 << 40
_ABI_MAJOR = 1
_ABI_MIN_MINOR = 2  # opa_eval, the one-call evaluation
_libc = ctypes.CDLL(None)
_libc.strnlen.restype = ctypes.c_size_t
_libc.strnlen.argtypes = (ctypes.c_void_p, ctypes.c_size_t)


class PolicyTimeout(PolicyError):
    """An evaluation computed for its whole deadline and was interrupted: a deny."""

    code = "policy_timeout"


class PolicyStarved(NoDecision):
    """An evaluation reached its deadline mostly waiting for the CPU and was
    interrupted: no answer, so unavailable rather than denied."""

    code = "policy_starved"


class PolicyOutOfMemory(PolicyError):
    """An evaluation needed more memory than the cap."""

    code = "policy_out_of_memory"


class PolicyTrap(PolicyError):
    """An evaluation trapped or aborted (a built-in error, a conflict, a Wasm trap)."""

    code = "policy_trap"


class MissingBuiltins(PolicyLoadError):
    """The compiled policy needs built-ins that OPA's Wasm leaves to the host."""

    code = "policy_builtins_unsupported"


@dataclass(frozen=True)
class Limits:
    """What one evaluation may use: wall time and linear memory. ``cpu_clock`` tells
    how much of that time it ran (`SPENT_SHARE`); a test holds it still."""

    timeout_s: float
    memory_bytes: int
    cpu_clock: Clock = thread_cpu

    @property
    def max_pages(self) -> int:
        return max(2, self.memory_bytes // PAGE_BYTES)


class WasmInstance:
    """One sandbox: a store, its memory, the instantiated module and the data in it."""

    def __init__(self, module: WasmModule, data: bytes, limits: Limits) -> None:
        EPOCH.ensure_ticking()
        self.limits = limits
        self._ticks = deadline_ticks(limits.timeout_s)
        self._store = wasmtime.Store(EPOCH.engine)
        self._store.set_epoch_deadline(_NO_DEADLINE)
        self._store.set_limits(memory_size=limits.max_pages * PAGE_BYTES)
        self._aborted: str | None = None
        engine = EPOCH.engine
        i32 = wasmtime.ValType.i32()
        linker = wasmtime.Linker(engine)
        try:
            if module.min_pages > limits.max_pages:
                raise PolicyLoadError(
                    f"policy.wasm needs {module.min_pages * PAGE_BYTES >> 20} MiB before it "
                    f"runs, more than the memory cap of {limits.memory_bytes >> 20} MiB"
                )
            self._memory = wasmtime.Memory(
                self._store,
                wasmtime.MemoryType(wasmtime.Limits(module.min_pages, limits.max_pages)),
            )
            linker.define(self._store, "env", "memory", self._memory)
            linker.define_func("env", "opa_abort", wasmtime.FuncType([i32], []), self._abort)
            linker.define_func("env", "opa_println", wasmtime.FuncType([i32], []), _ignore)
            for arity in range(5):
                linker.define_func(
                    "env",
                    f"opa_builtin{arity}",
                    wasmtime.FuncType([i32] * (arity + 2), [i32]),
                    _no_host_builtin,
                )
            self._instance = linker.instantiate(self._store, module.module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise PolicyLoadError(f"policy.wasm cannot be instantiated: {exc}") from None
        exports = self._instance.exports(self._store)
        try:
            self._malloc = _I32Export(self._store, exports["opa_malloc"])
            self._json_parse = _I32Export(self._store, exports["opa_json_parse"])
            self._heap_get = _I32Export(self._store, exports["opa_heap_ptr_get"])
            self._eval = _I32Export(self._store, exports["opa_eval"])
            self._json_dump = _I32Export(self._store, exports["opa_json_dump"])
            major = exports["opa_wasm_abi_version"].value(self._store)  # type: ignore[union-attr]
            minor = exports["opa_wasm_abi_minor_version"].value(self._store)  # type: ignore[union-attr]
        except KeyError as exc:
            raise PolicyLoadError(f"policy.wasm lacks the OPA export {exc}") from None
        if major != _ABI_MAJOR or minor < _ABI_MIN_MINOR:
            raise PolicyLoadError(
                f"policy.wasm uses OPA Wasm ABI {major}.{minor}; the gateway needs "
                f"{_ABI_MAJOR}.{_ABI_MIN_MINOR} or later (rebuild it with a current opa)"
            )
        self.entrypoints: dict[str, int] = self._metadata(exports, "entrypoints")
        self.builtins: dict[str, int] = self._metadata(exports, "builtins")
        if self.builtins:
            raise MissingBuiltins(
                "the policy uses built-ins that OPA's WebAssembly leaves to the host, which "
                f"the embedded engine does not provide: {', '.join(sorted(self.builtins))}. "
                "Rewrite those rules with built-ins OPA compiles into Wasm "
                "(docs/policies.md, 'Built-ins'), or use the OPA sidecar (policy.engine: opa)"
            )
        try:
            self._data_addr = self._parse(data) if data else 0
        except (wasmtime.Trap, _Aborted):
            raise PolicyLoadError(
                f"the policy data does not fit the memory cap of {limits.memory_bytes >> 20} MiB"
            ) from None
        self._base = self._heap_get(self._store)
        self._size = int(self._memory.data_len(self._store))

    def _metadata(self, exports: Any, name: str) -> dict[str, int]:
        address = exports[name](self._store)
        document = json.loads(self._string_at(self._json_dump(self._store, address)))
        if not isinstance(document, dict):
            raise PolicyLoadError(f"policy.wasm's {name}() is not an object")
        return {str(k): int(v) for k, v in document.items()}

    def _parse(self, text: bytes) -> int:
        address = self._malloc(self._store, len(text))
        self._memory.write(self._store, text, address)
        value = self._json_parse(self._store, address, len(text))
        if value == 0:
            raise PolicyLoadError("the policy data is not valid JSON for OPA")
        return int(value)

    def evaluate(self, entrypoint: int, input_json: bytes) -> Any:
        """The result set of ``entrypoint`` for ``input_json`` (``[]`` when undefined).

        Raises `PolicyTimeout`, `PolicyOutOfMemory` or `PolicyTrap`; after any of them
        the instance must be dropped.
        """
        store = self._store
        self._aborted = None
        cpu_started = self.limits.cpu_clock()
        EPOCH.begin()
        try:
            store.set_epoch_deadline(self._ticks)
            # The input goes where the heap begins, and the heap after it: `opa_eval`
            # sets the heap pointer from its argument and parses the input itself, so
            # one call into the module does it all (as OPA's own SDKs do). Each call
            # costs the host more than a small policy's evaluation.
            address = self._base
            heap = address + len(input_json)
            short = heap - self._size  # as the last evaluation left it: no wasm ran since
            if short > 0:
                self._memory.grow(store, -(-short // PAGE_BYTES))  # past the cap: raises
            self._memory.write(store, input_json, address)
            result = self._eval(
                store, 0, entrypoint, self._data_addr, address, len(input_json), heap, 0
            )
            text = self._string_at(result)
        except (wasmtime.Trap, _Aborted) as exc:
            raise self._classify(exc, self.limits.cpu_clock() - cpu_started) from None
        except (wasmtime.WasmtimeError, IndexError, ValueError) as exc:
            # A write past the memory cap (an input larger than the cap allows).
            raise PolicyOutOfMemory(
                f"policy evaluation needs more than the memory cap of "
                f"{self.limits.memory_bytes >> 20} MiB ({exc})"
            ) from None
        finally:
            # The deadline stays armed: nothing runs in this store until the next
            # evaluation arms its own.
            EPOCH.end()
        try:
            return json.loads(text)
        except ValueError:
            raise PolicyTrap("policy evaluation produced unreadable output") from None

    @property
    def memory_bytes(self) -> int:
        """The linear memory's size after the last evaluation."""
        return self._size

    def _classify(self, exc: wasmtime.Trap | _Aborted, cpu_s: float) -> PolicyError:
        if isinstance(exc, wasmtime.Trap) and exc.trap_code == wasmtime.TrapCode.INTERRUPT:
            deadline_ms = self.limits.timeout_s * 1000
            if cpu_s < self.limits.timeout_s * SPENT_SHARE:
                return PolicyStarved(
                    f"policy evaluation reached its deadline of {deadline_ms:.0f} ms "
                    f"after only {cpu_s * 1000:.0f} ms on the CPU (the machine is busy) "
                    "and was interrupted"
                )
            return PolicyTimeout(
                f"policy evaluation ran past its deadline of {deadline_ms:.0f} ms "
                "and was interrupted"
            )
        aborted = self._aborted or ""
        if "out of memory" in aborted or "malloc" in aborted:
            return PolicyOutOfMemory(
                f"policy evaluation needed more than the memory cap of "
                f"{self.limits.memory_bytes >> 20} MiB and was stopped"
            )
        if aborted:
            return PolicyTrap(f"policy evaluation failed: {aborted}")
        message = exc.message if isinstance(exc, wasmtime.Trap) else str(exc)
        return PolicyTrap(f"policy evaluation trapped: {message.splitlines()[0]}")

    def _abort(self, address: int) -> None:
        try:
            self._aborted = self._string_at(address, limit=4096).decode("utf-8", "replace")
        except (ValueError, wasmtime.WasmtimeError):
            self._aborted = "(unreadable abort message)"
        # Raised inside a host function, this unwinds the evaluation; wasmtime hands it
        # back to `evaluate` as it is.
        raise _Aborted(self._aborted)

    def _string_at(self, address: int, *, limit: int | None = None) -> bytes:
        """The NUL-terminated string at ``address``, never read past the memory."""
        size = self._size = int(self._memory.data_len(self._store))  # grown by what ran
        if not 0 < address < size:
            raise PolicyTrap(f"policy returned an address outside its memory ({address})")
        base = ctypes.addressof(self._memory.data_ptr(self._store).contents) + address
        room = size - address if limit is None else min(limit, size - address)
        length = _libc.strnlen(base, room)
        if length == room and limit is None:
            raise PolicyTrap("policy output is not terminated within its memory")
        return ctypes.string_at(base, length)

    def close(self) -> None:
        self._store.close()


class _I32Export:
    """An exported function of i32 parameters and one i32 result (every OPA export the
    gateway calls), called straight through wasmtime's C API.

    wasmtime-py's `Func.__call__` builds and compares a `ValType` for each argument on
    every call: 65 µs for `opa_eval`'s seven, against 7 µs this way, and several
    times a small policy's own evaluation (py-spy at c=16, docs/performance.md). The
    types are checked once, here; traps and exceptions raised in host functions come
    back as `Func.__call__` returns them (its own `enter_wasm`)."""

    def __init__(self, store: wasmtime.Store, export: Any) -> None:
        i32 = wasmtime.ValType.i32()
        kind = export.type(store) if isinstance(export, wasmtime.Func) else None
        if kind is None or any(p != i32 for p in kind.params) or list(kind.results) != [i32]:
            raise PolicyLoadError("policy.wasm exports an OPA function of an unexpected type")
        self._func = export._func
        self._arity = len(kind.params)
        self._params = _ffi.wasmtime_val_t * self._arity

    def __call__(self, store: wasmtime.Store, *args: int) -> int:
        params = self._params()
        for index, value in enumerate(args):
            params[index].kind = _ffi.WASMTIME_I32.value
            params[index].of.i32 = value
        results = (_ffi.wasmtime_val_t * 1)()
        with enter_wasm(store) as trap:
            error = _ffi.wasmtime_func_call(
                store._context(), ctypes.byref(self._func), params, self._arity, results, 1, trap
            )
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return int(results[0].of.i32)


class _Aborted(Exception):
    """The module called ``opa_abort`` (its allocator failed, a conflict, a bug)."""


def _ignore(_address: int) -> None:
    return None


def _no_host_builtin(*_args: int) -> int:
    # Never reached: a module that lists host built-ins is refused at load.
    raise RuntimeError("host built-ins are not provided")
