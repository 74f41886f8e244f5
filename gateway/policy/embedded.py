"""The embedded engine: Rego evaluated in-process by regopy (rego-cpp).

The policy folder is compiled once into a bundle; each decision only sets the input
and evaluates the bundle's ``gateway/decision`` entrypoint (well under a millisecond,
against several milliseconds for interpreting the modules afresh).

The input is handed over as RFC 8785 canonical JSON text, not as a Python object:
rego-cpp compares strings in their escaped form, and only text input escapes the same
way as policy literals and data (docs/decisions/0002).

Built-in errors are strict (a failing ``to_number`` is an error, not undefined), so a
policy bug surfaces as a deny that says so instead of silently skipping a rule.

Where evaluation runs: regopy calls rego-cpp through ctypes, which releases the GIL
(two threads evaluate 1.6× as fast as one on two cores), but a worker thread costs a
thread hop per decision, a measurable part of a call's latency, and at 16 concurrent
calls it bought no throughput either (bench/README.md; docs/decisions/0010 first
assumed the GIL was held). Evaluations therefore run inline on the event loop while the
recent ones have been fast (under `INLINE_BUDGET_S` on average), and move to worker
threads while a policy proves slow, where the caller's timeout can abandon a runaway
evaluation instead of stalling every other request. Either way a decision that
arrives after the caller's deadline is a deny (`gateway.policy.engine.decide`). An
input over `LARGE_INPUT_BYTES` is always evaluated off the loop, on a thread with a
large stack (see there). Each thread has its own interpreter: an interpreter holds
the input, so it is not shared.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from regopy import Interpreter, LogLevel, RegoError

from gateway.canonical import jcs
from gateway.errors import PolicyError, PolicyLoadError
from gateway.policy.decision import parse_decision
from gateway.types import Decision

ENTRYPOINT = "gateway/decision"
# Evaluate inline while the recent evaluations average less than this. The shipped
# policy takes 0.7 ms in a tight loop but ≈ 2 ms inside a busy gateway (cold CPU
# caches); a policy several times slower than that goes to worker threads.
INLINE_BUDGET_S = 0.005
# Weight of the newest evaluation in that running average.
_RECENT_WEIGHT = 0.2
# rego-cpp's regular expressions recurse once per byte of the string they match. On a
# thread's usual 8 MiB stack, measured: `regex.match("^[a-z]*$", s)` overflowed it at
# ≈ 26,000 ASCII characters, `^(a|b)*$` at 10,000–12,000, `^(.)*$` at 4,000 emoji
# (16 KB), and an overflow kills the process. So an input whose text is longer than
# LARGE_INPUT_BYTES (UTF-8) is never evaluated on the event loop or a worker thread
# but on a thread of its own with a 1 GiB stack, which carried 1,000,000 characters
# (past the default 1 MiB body limit) of each of those patterns. The stack is address
# space, touched only as deep as the evaluation recurses, but that touch is real
# memory (360–770 MiB for those million characters), so such evaluations run one at a
# time; one that waits longer than LARGE_INPUT_WAIT_S for its turn is a PolicyError
# (a deny). docs/policies.md has the numbers.
LARGE_INPUT_BYTES = 2048
LARGE_INPUT_STACK_BYTES = 1 << 30
LARGE_INPUT_WAIT_S = 5.0
_LARGE_INPUT_SLOT = threading.BoundedSemaphore(1)
_STACK_SIZE_LOCK = threading.Lock()

T = TypeVar("T")


@dataclass(frozen=True)
class PolicySource:
    """A policy folder read once: what is compiled is exactly what was hashed.

    Reloads, conformance overlays and the revision all work from this snapshot, so a
    file saved while a reload runs cannot make the checked policy differ from the
    one that is swapped in.
    """

    path: Path
    modules: tuple[tuple[str, str], ...]  # (relative path, text)
    data: tuple[tuple[str, Any], ...]  # (relative path, document mounted at its folder)

    def revision(self, extra_data: dict[str, Any] | None = None) -> str:
        """The content hash recorded with every decision (modules, data, config data)."""
        digest = hashlib.sha256()
        for relative, text in self.modules:
            digest.update(b"module\0" + relative.encode() + b"\0" + text.encode() + b"\0")
        for relative, document in self.data:
            digest.update(b"data\0" + relative.encode() + b"\0" + jcs(document) + b"\0")
        if extra_data:
            digest.update(b"extra\0" + jcs(extra_data))
        return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class CompiledPolicy:
    bundle: Any
    revision: str
    modules: tuple[str, ...]
    source: PolicySource | None = None


def policy_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The modules (tests excluded) and data documents of a policy folder."""
    if not path.is_dir():
        raise PolicyLoadError(f"policy folder {path} does not exist")
    modules = sorted(p for p in path.rglob("*.rego") if not p.name.endswith("_test.rego"))
    data = sorted(p for p in path.rglob("*.json") if "conformance" not in p.relative_to(path).parts)
    if not modules:
        raise PolicyLoadError(f"policy folder {path} holds no .rego modules")
    return modules, data


def read_policy(path: Path) -> PolicySource:
    """Reads a policy folder; raises `PolicyLoadError` naming the file and problem."""
    path = Path(path)
    module_files, data_files = policy_files(path)
    try:
        modules = tuple((m.relative_to(path).as_posix(), m.read_text()) for m in module_files)
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"cannot read policy folder {path}: {exc}") from None
    data = []
    for data_file in data_files:
        relative = data_file.relative_to(path)
        try:
            document = json.loads(data_file.read_text())
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(f"policy data {relative} is not valid JSON: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"cannot read policy data {relative}: {exc}") from None
        # OPA mounts data files under their folder path; do the same so both engines
        # see the same document tree.
        for part in reversed(relative.parent.parts):
            document = {part: document}
        # Canonical form: the revision must not depend on formatting or key order.
        data.append((relative.as_posix(), json.loads(jcs(document))))
    return PolicySource(path=path, modules=modules, data=tuple(data))


def compile_policy(
    path: Path,
    extra_data: dict[str, Any] | None = None,
    *,
    overlay: dict[str, Any] | None = None,
) -> CompiledPolicy:
    """Compiles a policy folder; raises `PolicyLoadError` naming the file and problem."""
    return compile_source(read_policy(path), extra_data, overlay=overlay)


def compile_source(
    source: PolicySource,
    extra_data: dict[str, Any] | None = None,
    *,
    overlay: dict[str, Any] | None = None,
) -> CompiledPolicy:
    """Compiles a read policy. ``overlay`` (conformance cases) is merged over the data
    last: objects key by key, anything else replaced."""
    interpreter = _new_interpreter()
    for relative, text in source.modules:
        try:
            interpreter.add_module(relative, text)
        except RegoError as exc:
            raise PolicyLoadError(
                f"policy module {relative} does not compile: {_rego_message(exc)}"
            ) from None
    merged: dict[str, Any] = {}
    for relative, document in source.data:
        _merge_data(merged, document, source=f"policy data {relative}")
    if extra_data:
        _merge_data(merged, json.loads(jcs(extra_data)), source="policy.data in the config")
    revision = source.revision(extra_data)
    if overlay:
        merged = overlay_data(merged, json.loads(jcs(overlay)))
        # A policy with different data is a different policy: never pass it off as
        # the folder's revision.
        revision += "+overlay:" + hashlib.sha256(jcs(overlay)).hexdigest()[:16]
    if merged:
        # One document: rego-cpp refuses to build a bundle from base documents that
        # share a key (x/data.json next to x/y/data.json), which OPA merges.
        interpreter.add_data_json(jcs(merged).decode())
    try:
        bundle = interpreter.build(None, [ENTRYPOINT])
    except RegoError as exc:
        raise PolicyLoadError(f"policy does not compile: {_rego_message(exc)}") from None
    if not bundle.ok():
        raise PolicyLoadError(
            "policy does not compile (rego-cpp reported an error building the bundle)"
        )
    return CompiledPolicy(
        bundle=bundle,
        revision=revision,
        modules=tuple(relative for relative, _ in source.modules),
        source=source,
    )


def overlay_data(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``: objects merged key by key, anything else replaced.

    The semantics of a conformance case's ``data`` (and of OPA's ``with`` on each
    replaced path), as opposed to `_merge_data`, for which any overlap is a conflict.
    """
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return overlay
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = overlay_data(base[key], value) if key in base else value
    return merged


def _merge_data(into: dict[str, Any], document: Any, *, source: str, at: str = "data") -> None:
    """Merges objects key by key as OPA does; any other overlap is a conflict."""
    if not isinstance(document, dict):
        raise PolicyLoadError(f"{source}: {at} must be a JSON object")
    for key, value in document.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            _merge_data(into[key], value, source=source, at=f"{at}.{key}")
        else:
            raise PolicyLoadError(f"{source} conflicts with other policy data at {at}.{key}")


class EmbeddedEngine:
    """Evaluates the compiled policy in force; `swap` replaces it atomically.

    Each evaluation reads ``self._compiled`` once and uses that bundle throughout, so
    a reload (gateway.policy.reload) never changes the policy under a call in flight.
    """

    name = "embedded"

    def __init__(
        self,
        path: Path,
        *,
        extra_data: dict[str, Any] | None = None,
        inline_budget_s: float = INLINE_BUDGET_S,
    ) -> None:
        self.path = Path(path)
        self._inline_budget_s = inline_budget_s
        self._extra_data = extra_data or {}
        self._compiled = compile_policy(self.path, self._extra_data)
        self._local = threading.local()
        self._recent_s = 0.0  # running average of evaluation times

    @property
    def revision(self) -> str:
        return self._compiled.revision

    @property
    def compiled(self) -> CompiledPolicy:
        return self._compiled

    @property
    def extra_data(self) -> dict[str, Any]:
        return self._extra_data

    def compile(
        self, source: PolicySource | None = None, *, overlay: dict[str, Any] | None = None
    ) -> CompiledPolicy:
        """Compiles this engine's folder (or ``source``) with its config data, without
        putting it in force; raises `PolicyLoadError`."""
        return compile_source(source or read_policy(self.path), self._extra_data, overlay=overlay)

    def swap(self, compiled: CompiledPolicy) -> CompiledPolicy:
        """Puts ``compiled`` in force for every later evaluation; returns the previous
        one. One reference assignment, hence atomic for concurrent evaluations."""
        previous, self._compiled = self._compiled, compiled
        return previous

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        compiled = self._compiled
        text = input_text(policy_input)
        if is_large(text):
            # Not counted in the running average: one large input must not move the
            # small ones after it off the loop.
            raw = await anyio.to_thread.run_sync(
                self._evaluate_sync, compiled, text, abandon_on_cancel=True
            )
            return parse_decision(raw, engine=self.name, revision=compiled.revision)
        started = time.perf_counter()
        try:
            if self._recent_s < self._inline_budget_s:
                raw = self._evaluate_sync(compiled, text)
            else:
                raw = await anyio.to_thread.run_sync(
                    self._evaluate_sync, compiled, text, abandon_on_cancel=True
                )
        finally:
            elapsed = time.perf_counter() - started
            self._recent_s += _RECENT_WEIGHT * (elapsed - self._recent_s)
        return parse_decision(raw, engine=self.name, revision=compiled.revision)

    def evaluate_sync(self, policy_input: dict[str, Any]) -> Decision:
        """For tools that are not async (policy replay, conformance checks)."""
        return self.evaluate_compiled(self._compiled, policy_input)

    def evaluate_compiled(self, compiled: CompiledPolicy, policy_input: dict[str, Any]) -> Decision:
        """Evaluates a bundle that need not be in force (a reload's candidate, a
        conformance overlay), synchronously; raises `PolicyError`."""
        raw = self._evaluate_sync(compiled, input_text(policy_input))
        return parse_decision(raw, engine=self.name, revision=compiled.revision)

    def _evaluate_sync(self, compiled: CompiledPolicy, text: str) -> Any:
        if is_large(text):
            return on_a_large_stack(self._evaluate_text, compiled, text)
        return self._evaluate_text(compiled, text)

    def _evaluate_text(self, compiled: CompiledPolicy, text: str) -> Any:
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            interpreter = self._local.interpreter = _new_interpreter()
        try:
            interpreter.set_input_term(text)
            output = interpreter.query_bundle_entrypoint(compiled.bundle, ENTRYPOINT)
        except RegoError as exc:
            raise PolicyError(f"policy evaluation failed: {_rego_message(exc)}") from None
        except ValueError:
            # rego-cpp produced output that is not JSON (seen with sprintf of a string
            # function argument); never guess at what it meant.
            raise PolicyError("policy evaluation produced unreadable output") from None
        if not output.ok():
            raise PolicyError(
                "policy evaluation failed (a built-in error, a type error or conflicting "
                "rule values in data.gateway.decision)"
            )
        if len(output) == 0 or not output[0].expressions:
            return None  # undefined
        return output[0][0]

    async def ready(self) -> bool:
        return True  # compiled at construction; a failed compile never produces an engine

    async def close(self) -> None:
        return None


def input_text(policy_input: dict[str, Any]) -> str:
    """The input as rego-cpp gets it: JCS text, not regopy.Input(value) (0002). Input
    also cuts strings at a NUL and turns integers beyond 64 bits into 0, so policy
    would judge other arguments than the upstream receives."""
    try:
        return jcs(policy_input).decode()
    except ValueError as exc:
        raise PolicyError(f"the policy input cannot be evaluated: {exc}") from None


def is_large(text: str) -> bool:
    """Whether ``text`` must be evaluated `on_a_large_stack` (its UTF-8 length, not its
    character count: rego-cpp recurses per byte)."""
    return len(text) > LARGE_INPUT_BYTES or (
        not text.isascii() and len(text.encode("utf-8", "surrogatepass")) > LARGE_INPUT_BYTES
    )


def on_a_large_stack(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on a thread of its own whose stack is `LARGE_INPUT_STACK_BYTES`,
    one such call at a time, waiting for it. Raises PolicyError when no turn comes
    within `LARGE_INPUT_WAIT_S` or no such thread can be started."""
    if not _LARGE_INPUT_SLOT.acquire(timeout=LARGE_INPUT_WAIT_S):
        raise PolicyError(
            f"another large policy input is being evaluated and this one waited "
            f"{LARGE_INPUT_WAIT_S:g} s for its turn (inputs over {LARGE_INPUT_BYTES} bytes "
            "are evaluated one at a time)"
        )
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, function(*args)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            # Released by the thread itself: a caller that stopped waiting (its
            # deadline passed) must not let another deep evaluation start meanwhile.
            _LARGE_INPUT_SLOT.release()

    try:
        # stack_size is process-wide, so it is set only around this start. A thread
        # another part of the process starts in that instant gets the large stack
        # too: more address space reserved, nothing touched.
        with _STACK_SIZE_LOCK:
            previous = threading.stack_size(LARGE_INPUT_STACK_BYTES)
            try:
                thread = threading.Thread(target=run, name="policy-large-input", daemon=True)
                thread.start()
            finally:
                threading.stack_size(previous)
    except (RuntimeError, MemoryError, ValueError) as exc:
        _LARGE_INPUT_SLOT.release()
        raise PolicyError(f"could not start a thread for a large policy input: {exc}") from None
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _new_interpreter() -> Interpreter:
    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE
    interpreter.strict_built_in_errors = True
    return interpreter


def _rego_message(exc: RegoError) -> str:
    """rego-cpp reports errors as an S-expression; keep the human messages and places."""
    text = str(exc)
    messages = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("(errormsg"):
            messages.append(line.split(":", 1)[-1].rstrip(")"))
        elif line.startswith("(error ") and "|" in line:
            messages.append("at " + line.removeprefix("(error ").split("|")[0].split(":", 1)[-1])
    return (
        " ".join(messages)
        if messages
        else text.strip().splitlines()[0]
        if text.strip()
        else "error"
    )
