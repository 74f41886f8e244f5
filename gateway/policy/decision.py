"""Parsing an engine's raw result into a `Decision`, strictly.

The contract (architecture.md §5) is exact: a result that is not an object with a boolean
``allow`` is malformed, and malformed means deny. Optional fields are validated too,
because an approver list or redaction path of the wrong type would otherwise be
silently ignored downstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from gateway.canonical import jcs
from gateway.errors import PolicyError
from gateway.types import Decision, Limit, Obligations

# Bounds on what a policy may ask the gateway to count: a limit is a counter row in the
# database, so its name and scope stay small, and a decision names a few of them.
MAX_LIMITS = 16
MAX_LIMIT_NAME = 128
MAX_SCOPE_KEYS = 8
MAX_SCOPE_VALUE = 512


class _LimitModel(BaseModel):
    # Strict: a misspelt "window" would otherwise leave a limit that never counts.
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=MAX_LIMIT_NAME)
    scope: dict[StrictStr, StrictStr] = Field(default_factory=dict, max_length=MAX_SCOPE_KEYS)
    calls: StrictInt | None = Field(None, gt=0)
    window_s: StrictInt | None = Field(None, gt=0, le=31 * 86400)
    concurrent: StrictInt | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _counts_something(self) -> _LimitModel:
        if (self.calls is None) != (self.window_s is None):
            raise ValueError("calls and window_s go together")
        if self.calls is None and self.concurrent is None:
            raise ValueError("a limit needs calls with window_s, or concurrent")
        for key, value in self.scope.items():
            if len(key) > MAX_LIMIT_NAME or len(value) > MAX_SCOPE_VALUE:
                raise ValueError(f"scope {key[:40]!r} is too long")
        return self


class _ObligationsModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    redact: list[StrictStr] = []
    approvers: list[StrictStr] = []
    approval_ttl_s: StrictInt | None = Field(None, gt=0)
    plan_review: StrictBool = False
    limits: list[_LimitModel] = Field(default_factory=list, max_length=MAX_LIMITS)


class _DecisionModel(BaseModel):
    # Extra keys are tolerated so a policy can carry its own debugging fields.
    model_config = ConfigDict(extra="allow")

    allow: StrictBool
    require_approval: StrictBool = False
    reasons: list[StrictStr] = []
    obligations: _ObligationsModel = _ObligationsModel()
    rule: StrictStr | None = None


class MalformedDecision(PolicyError):
    code = "policy_result_malformed"


def parse_decision(
    raw: Any, *, engine: str, revision: str | None, decision_id: str | None = None
) -> Decision:
    """Validates a raw result; raises `MalformedDecision` (a `PolicyError`) when it is not one."""
    if raw is None:
        raise MalformedDecision("policy result is undefined (no data.gateway.decision)")
    try:
        model = _DecisionModel.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "result"
        raise MalformedDecision(f"policy result is malformed: {where}: {first['msg']}") from None
    for path in model.obligations.redact:
        if not path.startswith("/"):
            raise MalformedDecision(
                f"policy result is malformed: redact path {path!r} is not a JSON pointer"
            )
    seen: set[str] = set()
    for limit in model.obligations.limits:
        # One name and scope is one counter: two different numbers for it would make
        # the count depend on which of them a call met first.
        identity = jcs([limit.name, limit.scope]).decode()
        if identity in seen:
            raise MalformedDecision(
                f"policy result is malformed: limit {limit.name!r} is named twice with "
                "the same scope"
            )
        seen.add(identity)
    return Decision(
        allow=model.allow,
        require_approval=model.require_approval,
        reasons=tuple(model.reasons),
        obligations=Obligations(
            redact=tuple(model.obligations.redact),
            approvers=tuple(model.obligations.approvers),
            approval_ttl_s=model.obligations.approval_ttl_s,
            plan_review=model.obligations.plan_review,
            limits=tuple(
                Limit(
                    name=limit.name,
                    scope=dict(sorted(limit.scope.items())),
                    calls=limit.calls,
                    window_s=limit.window_s,
                    concurrent=limit.concurrent,
                )
                for limit in model.obligations.limits
            ),
        ),
        rule=model.rule,
        engine=engine,
        revision=revision,
        decision_id=decision_id,
    )
