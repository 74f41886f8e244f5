"""Policy: asking Rego whether a principal may do something, and never failing open.

Responsibilities: the policy input contract (architecture.md §5, version 1), the
engines that evaluate it (embedded: OPA-compiled WebAssembly in a sandbox, from a Rego
folder or a signed bundle; an OPA server), and turning whatever an engine returns into
a `Decision`.

Invariants:
- Anything but a well-formed decision object (an engine error, a timeout, an undefined
  or malformed result) becomes a deny whose reason says what went wrong.
- Every decision names the engine and the policy revision that produced it.
"""

from gateway.policy.decision import parse_decision
from gateway.policy.engine import PolicyEngine, decide
from gateway.policy.input import POLICY_INPUT_VERSION, build_input

__all__ = ["POLICY_INPUT_VERSION", "PolicyEngine", "build_input", "decide", "parse_decision"]
