"""Policy: asking Rego whether a principal may do something, and never failing open.

Responsibilities: the policy input contract (architecture.md §5, version 1), the
engines that evaluate it (embedded: OPA-compiled WebAssembly in a sandbox, from a Rego
folder or a signed bundle; an OPA server), and turning whatever an engine returns into
a `Decision`.

Modules:
- `input`: the policy input (version 1); `decision`: an engine's answer as a
  `Decision`; `engine`: the `PolicyEngine` interface and `decide`.
- `decider`: the policy as the gateway asks it (an engine, the decision deadline, a
  bounded queue); `listing`: a list in one decision (what a principal may see).
- `embedded`: the in-process engine on OPA's Wasm, with `wasm` (the ABI on wasmtime,
  sandboxed instances), `wasm_module` (a compiled module, the one wasmtime engine),
  `module_cache` (compiled modules kept on disk), `folder` (a Rego folder compiled by
  `opa build`), `bundle` and `bundle_signing` (OPA bundles and their signatures) and
  `origins` (a folder, a bundle file or a bundle server); `reload`: its safe reload
  (SIGHUP, a changed source, a new bundle revision).
- `opa`: an OPA server over its REST API; `opa_admin`: pushing a folder to a
  development OPA server.
- `conformance` (with `opa_conformance` against an OPA server, and
  `conformance_memo`, passed runs remembered): the cases every engine must meet;
  `lifecycle`: a policy's way into service (its conformance check, ``policy.loaded``
  and ``policy.rejected``).
- `replay`: yesterday's real calls against a candidate policy.

Invariants:
- An answer that is not a well-formed decision object (an engine error, an undefined
  or malformed result) becomes a deny whose reason says what went wrong; no answer at
  all (the deadline passed, the engine unreachable, the queue full) is
  `PolicyUnavailable`: answered 503, never reported as a denial, never an allow.
- Every decision names the engine and the policy revision that produced it.
"""

from gateway.policy.decision import parse_decision
from gateway.policy.engine import PolicyEngine, decide
from gateway.policy.input import POLICY_INPUT_VERSION, build_input

__all__ = ["POLICY_INPUT_VERSION", "PolicyEngine", "build_input", "decide", "parse_decision"]
