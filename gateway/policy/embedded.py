"""The embedded engine: the policy compiled to WebAssembly by OPA, evaluated in-process.

The policy comes from a Rego folder (compiled with the real OPA binary,
gateway.policy.folder) or from an OPA bundle (a file or a bundle server,
gateway.policy.origins); either way it is one Wasm module plus its data. Each
decision writes the input into a sandboxed instance and runs ``opa_eval``
(gateway.policy.wasm): well under a millisecond for the shipped policy.

Evaluations run inline on the caller's thread (the event loop, for the gateway): an
evaluation cannot outlive its deadline, which the sandbox enforces itself, and a thread
hop would cost more than most evaluations. The deadline is the decision's
(``policy.timeout_ms``); the memory cap is ``policy.memory_mb`` per instance.

`swap` replaces the policy in force with one reference assignment; an evaluation reads
``self._compiled`` once, so a reload never changes the policy under a call in flight.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from gateway.canonical import jcs
from gateway.config import EmbeddedPolicyConfig
from gateway.errors import PolicyError, PolicyLoadError
from gateway.policy.bundle import Bundle, merge_data, read_bundle
from gateway.policy.decision import parse_decision
from gateway.policy.folder import PolicySource, build_bundle, opa_binary, read_policy
from gateway.policy.listing import ListUnsupported
from gateway.policy.module_cache import ModuleCache
from gateway.policy.wasm import RECYCLE_BYTES, Limits, WasmInstance, WasmModule
from gateway.types import Decision

DECISION = "gateway/decision"
VISIBLE = "gateway/visible"
DEFAULT_LIMITS = Limits(
    timeout_s=EmbeddedPolicyConfig().timeout_ms / 1000,
    memory_bytes=EmbeddedPolicyConfig().memory_mb << 20,
)


def limits_of(config: EmbeddedPolicyConfig) -> Limits:
    """The deadline and memory cap the config gives each evaluation."""
    return Limits(timeout_s=config.timeout_ms / 1000, memory_bytes=config.memory_mb << 20)


def module_cache_of(config: EmbeddedPolicyConfig) -> ModuleCache | None:
    """Where compiled modules are kept (``policy.module_cache_dir``), if anywhere."""
    return ModuleCache(config.module_cache_dir) if config.module_cache_dir else None


def folder_engine(config: EmbeddedPolicyConfig, path: Path | None = None) -> EmbeddedEngine:
    """An engine for the config's policy folder (or ``path``), compiled now."""
    return EmbeddedEngine(
        path or config.path,
        extra_data=config.data,
        limits=limits_of(config),
        opa=str(config.opa_binary) if config.opa_binary else None,
        module_cache=module_cache_of(config),
    )


@dataclass
class CompiledPolicy:
    """A Wasm policy with its data, ready to evaluate; instances are made on demand."""

    module: WasmModule
    data: dict[str, Any]
    revision: str
    modules: tuple[str, ...]  # the Rego files it was built from, for policy.loaded
    limits: Limits
    source: PolicySource | None = None  # the folder snapshot, when built from one
    bundle: Bundle | None = field(default=None, repr=False)
    entrypoints: dict[str, int] = field(default_factory=dict)
    _idle: list[WasmInstance] = field(default_factory=list, repr=False)
    _data_json: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self._data_json = json.dumps(self.data, ensure_ascii=False).encode()
        # One instance now: a module that needs host built-ins, lacks the entrypoint or
        # whose data does not fit the memory cap is refused here, at load.
        probe = WasmInstance(self.module, self._data_json, self.limits)
        self.entrypoints = probe.entrypoints
        if DECISION not in self.entrypoints:
            raise PolicyLoadError(
                f"the compiled policy has no {DECISION} entrypoint (it has "
                f"{sorted(self.entrypoints)})"
            )
        self._idle.append(probe)

    @property
    def content_key(self) -> str:
        """What identifies this policy's content: the folder's content hash, or a
        bundle's revision with its digest (a manifest revision alone can be reused)."""
        if self.source is None and self.bundle is not None:
            return f"{self.revision}@sha256:{self.bundle.digest}"
        return self.revision

    def with_overlay(self, overlay: dict[str, Any]) -> CompiledPolicy:
        """The same module over other data (a conformance case's overlay): objects
        merged key by key, anything else replaced. Its revision says so."""
        data = overlay_data(self.data, json.loads(jcs(overlay)))
        revision = self.revision + "+overlay:" + hashlib.sha256(jcs(overlay)).hexdigest()[:16]
        return replace(self, data=data, revision=revision, _idle=[], _data_json=b"")

    def evaluate(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        """The value of ``entrypoint`` for ``policy_input``, or None when undefined.

        Raises `PolicyError` (a timeout, the memory cap, a trap, an input that is not
        JSON); the instance that failed is dropped, never reused.
        """
        try:
            number = self.entrypoints[entrypoint]
        except KeyError:
            raise ListUnsupported(f"the policy has no {entrypoint} entrypoint") from None
        text = input_json(policy_input)
        try:
            instance = self._idle.pop()
        except IndexError:
            instance = WasmInstance(self.module, self._data_json, self.limits)
        try:
            results = instance.evaluate(number, text)
        except BaseException:
            instance.close()  # whatever went wrong, this sandbox is not used again
            raise
        if instance.memory_bytes > RECYCLE_BYTES:
            instance.close()
        else:
            self._idle.append(instance)
        if not isinstance(results, list):
            raise PolicyError("policy evaluation returned something other than a result set")
        if not results:
            return None
        first = results[0]
        return first.get("result") if isinstance(first, dict) else None


def input_json(policy_input: dict[str, Any]) -> bytes:
    """The input as UTF-8 JSON; raises `PolicyError` for what JSON cannot carry (a lone
    surrogate, NaN), which the upstream would receive differently from what policy judged."""
    try:
        return json.dumps(
            policy_input, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    except (ValueError, TypeError) as exc:
        raise PolicyError(f"the policy input cannot be evaluated: {exc}") from None


def overlay_data(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``: objects merged key by key, anything else replaced.

    The semantics of a conformance case's ``data`` (and of OPA's ``with`` on each
    replaced path), as opposed to `merge_data`, for which any overlap is a conflict.
    """
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return overlay
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = overlay_data(base[key], value) if key in base else value
    return merged


def load_bundle(
    bundle: Bundle,
    *,
    extra_data: dict[str, Any] | None,
    limits: Limits,
    revision: str | None = None,
    source: PolicySource | None = None,
    module_cache: ModuleCache | None = None,
) -> CompiledPolicy:
    """A verified bundle made ready to evaluate, with the config's data merged in."""
    data = json.loads(json.dumps(bundle.data))
    if extra_data:
        merge_data(data, json.loads(jcs(extra_data)), source="policy.data in the config")
    if revision is None:
        revision = bundle.revision
        if extra_data:
            revision += "+config:" + hashlib.sha256(jcs(extra_data)).hexdigest()[:16]
    modules = (
        tuple(relative for relative, _ in source.modules)
        if source is not None
        else tuple(sorted(p for p in bundle.files if p.endswith(".rego")))
    )
    return CompiledPolicy(
        module=WasmModule(bundle.wasm, module_cache),
        data=data,
        revision=revision,
        modules=modules,
        limits=limits,
        source=source,
        bundle=bundle,
    )


def compile_source(
    source: PolicySource,
    extra_data: dict[str, Any] | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    opa: str | None = None,
    module_cache: ModuleCache | None = None,
) -> CompiledPolicy:
    """Compiles a read policy folder with OPA; raises `PolicyLoadError`."""
    revision = source.revision(extra_data)
    archive = build_bundle(source, revision, opa=opa or opa_binary())
    bundle = read_bundle(archive, origin=str(source.path))
    return load_bundle(
        bundle,
        extra_data=extra_data,
        limits=limits,
        revision=revision,
        source=source,
        module_cache=module_cache,
    )


def compile_policy(path: Path, extra_data: dict[str, Any] | None = None) -> CompiledPolicy:
    """Reads and compiles a policy folder; raises `PolicyLoadError`."""
    return compile_source(read_policy(path), extra_data)


class EmbeddedEngine:
    """Evaluates the compiled policy in force; `swap` replaces it atomically."""

    name = "embedded"
    evaluates_inline = True  # on the calling thread, bounded by the sandbox's deadline

    def __init__(
        self,
        path: Path | None = None,
        *,
        extra_data: dict[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        opa: str | None = None,
        compiled: CompiledPolicy | None = None,
        module_cache: ModuleCache | None = None,
    ) -> None:
        """A folder engine (``path``; compiled now) or one serving ``compiled`` (a
        bundle, loaded by its origin). ``module_cache`` keeps compiled modules across
        restarts and reloads."""
        self.path = Path(path) if path is not None else None
        self.limits = limits
        self._opa = opa
        self._module_cache = module_cache
        self._extra_data = extra_data or {}
        if compiled is None:
            if self.path is None:
                raise ValueError("EmbeddedEngine needs a policy folder or a compiled policy")
            compiled = self.compile()
        self._compiled = compiled

    @property
    def revision(self) -> str:
        return self._compiled.revision

    @property
    def revision_follows_policy(self) -> bool:
        return True  # a digest of the policy and its data, or of the bundle's content

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
        if source is None:
            if self.path is None:
                raise PolicyLoadError("this engine serves a bundle, not a policy folder")
            source = read_policy(self.path)
        compiled = compile_source(
            source,
            self._extra_data,
            limits=self.limits,
            opa=self._opa,
            module_cache=self._module_cache,
        )
        return compiled.with_overlay(overlay) if overlay else compiled

    def load(self, bundle: Bundle) -> CompiledPolicy:
        """A verified bundle with this engine's config data and limits, not in force."""
        return load_bundle(
            bundle,
            extra_data=self._extra_data,
            limits=self.limits,
            module_cache=self._module_cache,
        )

    def swap(self, compiled: CompiledPolicy) -> CompiledPolicy:
        """Puts ``compiled`` in force for every later evaluation; returns the previous
        one. One reference assignment, hence atomic for concurrent evaluations."""
        previous, self._compiled = self._compiled, compiled
        return previous

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        return self.evaluate_compiled(self._compiled, policy_input)

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str]:
        """The raw ``gateway/visible`` result for ``list_input`` and the revision that
        produced it; raises `PolicyError` (`ListUnsupported` for an older policy)."""
        compiled = self._compiled
        # On a worker thread, unlike a call's decision: a list over a large catalog
        # evaluates for milliseconds, and on the event loop it would stall every call
        # meanwhile. wasmtime runs the module with the GIL released, and each thread
        # takes an instance of its own from the pool.
        visible = await anyio.to_thread.run_sync(compiled.evaluate, VISIBLE, list_input)
        return visible, compiled.revision

    def evaluate_sync(self, policy_input: dict[str, Any]) -> Decision:
        """For tools that are not async (policy replay, conformance checks)."""
        return self.evaluate_compiled(self._compiled, policy_input)

    def evaluate_compiled(self, compiled: CompiledPolicy, policy_input: dict[str, Any]) -> Decision:
        """Evaluates a policy that need not be in force (a reload's candidate, a
        conformance overlay); raises `PolicyError`."""
        raw = compiled.evaluate(DECISION, policy_input)
        return parse_decision(raw, engine=self.name, revision=compiled.revision)

    async def ready(self) -> bool:
        return True  # loaded at construction; a failed load never produces an engine

    async def close(self) -> None:
        return None
