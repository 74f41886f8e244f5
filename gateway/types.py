"""The small vocabulary every part of the gateway shares.

Surfaces build an `Operation` (a tool call, a resource read, a prompt get or a
completion; in `gateway.operations`, with what it carries between the caller and the
upstream), the pipeline answers with an `Outcome`; identity yields a `Principal`,
policy a `Decision`, the catalog `ToolDefinition`s (and, in `gateway.offerings`, the
prompts and resources upstreams offer). These are plain
frozen dataclasses: validation happens at the edges (config, HTTP bodies, tokens),
never in here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Transport = Literal["mcp", "rest", "executor"]

# The `engine` of a refusal by the gateway's own checks before policy was asked.
GATEWAY_ENGINE = "gateway"
# The `rule` of a deny that no policy rule made: the engine answered with an error or
# something that is not a decision.
FAIL_CLOSED_RULE = "gateway.fail_closed"
# The `rule` recorded when no decision could be had (none could start in time, or the
# engine gave no answer): the call was refused as unavailable (503), not denied.
UNAVAILABLE_RULE = "gateway.unavailable"
Risk = Literal["low", "medium", "high"]

# The MCP methods that reach an upstream, each through the one pipeline (architecture.md §2).
CallMethod = Literal[
    "tools/call",
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
]


# A subject that names its kind ("user:alice", "agent:triage"); the kind is a URI
# scheme's shape, compared without case.
_KIND = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.+)", re.DOTALL)


def canonical_subject(sub: str) -> str:
    """The one spelling of a subject the gateway compares (docs/identity.md, "One
    identity"): its kind in lower case, and a subject without a kind taken as a
    user's, so that ``user:alice``, ``USER:alice`` and ``alice`` are one person. The
    rest is compared exactly, as OpenID Connect compares ``sub``."""
    kinded = _KIND.fullmatch(sub)
    if kinded is None:
        return "user:" + sub
    return kinded.group(1).lower() + ":" + kinded.group(2)


@dataclass(frozen=True, order=True)
class Identity:
    """Who someone is, for every comparison the gateway makes (self-approval, delegation
    chains, approver entries, run ownership, approval bindings): the issuer and the
    canonical subject. Two principals are the same person exactly when their
    identities are equal."""

    iss: str
    sub: str

    @classmethod
    def of(cls, sub: str, iss: str) -> Identity:
        return cls(iss, canonical_subject(sub))

    @property
    def key(self) -> str:
        """One string for storing and indexing: ``<iss>`` newline ``<sub>`` (an issuer
        is a URL and never holds a newline, so the split is unambiguous)."""
        return f"{self.iss}\n{self.sub}"


@dataclass(frozen=True)
class Actor:
    """One link of a delegation chain (RFC 8693 ``act`` claim). ``iss`` is None when
    the claim named none: the actor is then of the token's own issuer."""

    sub: str
    iss: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sub": self.sub} if self.iss is None else {"sub": self.sub, "iss": self.iss}

    def identity(self, token_issuer: str) -> Identity:
        return Identity.of(self.sub, self.iss or token_issuer)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and the chain of actors it acts through.

    ``act_chain[0]`` is the current actor (the outermost ``act``), the next one is
    the actor before it, and so on.
    """

    sub: str
    iss: str
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    tenant: str | None = None
    act_chain: tuple[Actor, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict)
    token_id: str | None = None

    @property
    def identity(self) -> Identity:
        return Identity.of(self.sub, self.iss)

    def parties(self) -> frozenset[Identity]:
        """The subject and every actor of its delegation chain: whoever takes part in
        what this principal does."""
        return frozenset({self.identity, *(a.identity(self.iss) for a in self.act_chain)})

    def to_policy_subject(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "iss": self.iss,
            "roles": list(self.roles),
            "scopes": list(self.scopes),
            "tenant": self.tenant,
            "act_chain": [a.to_dict() for a in self.act_chain],
            "claims": self.claims,
        }

    def to_audit(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "iss": self.iss,
            "roles": list(self.roles),
            "act_chain": [a.to_dict() for a in self.act_chain],
        }


@dataclass(frozen=True)
class ClientInfo:
    ip: str | None = None
    user_agent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ip": self.ip, "user_agent": self.user_agent}


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as the gateway exposes it (``<upstream>__<tool>``)."""

    name: str
    server: str
    upstream_tool: str
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any]
    risk: Risk
    definition_hash: str
    labels: tuple[str, ...] = ()
    title: str | None = None

    def to_policy_resource(self) -> dict[str, Any]:
        return {
            "tool": self.name,
            "server": self.server,
            "upstream_tool": self.upstream_tool,
            "annotations": self.annotations,
            "risk": self.risk,
            "definition_hash": self.definition_hash,
            "labels": list(self.labels),
        }


@dataclass(frozen=True)
class Limit:
    """A limit a decision puts on the call it allows (docs/decisions/0031): at most
    ``calls`` per ``window_s`` seconds and/or ``concurrent`` at once, counted per
    ``name`` and ``scope`` (what policy chose to count by: principal, tool, upstream,
    …). Calls whose limits have the same name and scope share one counter, in every
    replica; the gateway enforces it (`gateway.limits`)."""

    name: str
    scope: dict[str, Any]
    calls: int | None = None
    window_s: int | None = None
    concurrent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "scope": dict(self.scope)}
        for key in ("calls", "window_s", "concurrent"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Obligations:
    redact: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approval_ttl_s: int | None = None
    # plan/submit only: the approval is one review of the whole plan, before any step
    # runs (docs/workflows.md, "Plan review"), not each step's own when it runs.
    plan_review: bool = False
    # Calls per window and concurrent calls (`gateway.limits`); only on what the
    # pipeline forwards (tools/call, resources/read, prompts/get, completion/complete).
    limits: tuple[Limit, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"redact": list(self.redact), "approvers": list(self.approvers)}
        if self.approval_ttl_s is not None:
            out["approval_ttl_s"] = self.approval_ttl_s
        if self.plan_review:
            out["plan_review"] = True
        if self.limits:
            out["limits"] = [limit.to_dict() for limit in self.limits]
        return out


@dataclass(frozen=True)
class Decision:
    """A policy result (architecture.md §5), with where it came from.

    ``engine`` is ``embedded``, ``opa``, ``gateway`` (a refusal by the gateway's own
    checks before policy, e.g. schema-invalid arguments) or ``plan`` (an approval gate
    of a plan that policy allowed).
    """

    allow: bool
    require_approval: bool
    reasons: tuple[str, ...]
    obligations: Obligations
    rule: str | None
    engine: str
    revision: str | None
    decision_id: str | None = None

    @property
    def permits_now(self) -> bool:
        return self.allow and not self.require_approval

    @property
    def says_what_to_redact(self) -> bool:
        """Whether policy itself decided, so that its ``redact`` obligations are the
        whole answer to what may be recorded; not for a deny by the gateway's own
        checks before policy, nor for one by an engine that failed (fail closed)."""
        return self.engine != GATEWAY_ENGINE and self.rule not in (
            FAIL_CLOSED_RULE,
            UNAVAILABLE_RULE,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "require_approval": self.require_approval,
            "reasons": list(self.reasons),
            "obligations": self.obligations.to_dict(),
            "rule": self.rule,
            "engine": self.engine,
            "revision": self.revision,
            "decision_id": self.decision_id,
        }


def deny(reason: str, *, engine: str, revision: str | None = None) -> Decision:
    """A refusal that did not come from a policy rule (errors, pre-policy checks)."""
    return Decision(
        allow=False,
        require_approval=False,
        reasons=(reason,),
        obligations=Obligations(),
        rule=None,
        engine=engine,
        revision=revision,
    )


@dataclass(frozen=True)
class ToolResult:
    """An upstream result, rebuilt: content, structured content and the error flag only."""

    content: list[dict[str, Any]]
    structured_content: dict[str, Any] | None = None
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "structured_content": self.structured_content,
            "is_error": self.is_error,
        }


@dataclass(frozen=True)
class McpResult:
    """An upstream's answer to ``resources/read``, ``prompts/get`` or
    ``completion/complete``, rebuilt as the method's MCP result document (its own
    fields, in MCP spelling, without the upstream's ``_meta``)."""

    method: CallMethod
    document: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.document


@dataclass(frozen=True)
class UpstreamTask:
    """An upstream's answer to a task-augmented ``tools/call``: the task it created,
    in either era's fields, normalized. The call's result comes later (`tasks/*`),
    and so does its ``call.outcome`` (docs/decisions/0030)."""

    upstream: str
    task_id: str
    status: str
    message: str | None = None
    ttl_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "task_id": self.task_id,
            "status": self.status,
            "message": self.message,
            "ttl_ms": self.ttl_ms,
        }


class OutcomeStatus(enum.StrEnum):
    OK = "ok"  # forwarded; the upstream answered (its result may itself be an error)
    DENIED = "denied"  # refused by policy or a gateway check; not forwarded
    PENDING_APPROVAL = "pending_approval"  # waiting for a human; not forwarded yet
    ERROR = "error"  # forwarding failed (upstream down, timeout, audit unavailable)


@dataclass(frozen=True)
class Outcome:
    request_id: str
    target: str  # the operation's target (a gateway tool name for tools/call)
    status: OutcomeStatus
    decision: Decision | None
    result: ToolResult | McpResult | UpstreamTask | None = None
    error: Any = None  # a GatewayError when status is DENIED, PENDING_APPROVAL or ERROR
    approval_id: str | None = None
    # Set when this is the recorded outcome of an approved call that already ran for
    # another request (named here), returned instead of running it twice.
    replay_of: str | None = None
