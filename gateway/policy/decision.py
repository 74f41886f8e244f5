"""Parsing an engine's raw result into a `Decision`, strictly.

The contract (architecture.md §5) is exact: a result that is not an object with a boolean
``allow`` is malformed, and malformed means deny. Optional fields are validated too,
because an approver list or redaction path of the wrong type would otherwise be
silently ignored downstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from gateway.errors import PolicyError
from gateway.types import Decision, Obligations


class _ObligationsModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    redact: list[StrictStr] = []
    approvers: list[StrictStr] = []
    approval_ttl_s: StrictInt | None = Field(None, gt=0)
    plan_review: StrictBool = False


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
    return Decision(
        allow=model.allow,
        require_approval=model.require_approval,
        reasons=tuple(model.reasons),
        obligations=Obligations(
            redact=tuple(model.obligations.redact),
            approvers=tuple(model.obligations.approvers),
            approval_ttl_s=model.obligations.approval_ttl_s,
            plan_review=model.obligations.plan_review,
        ),
        rule=model.rule,
        engine=engine,
        revision=revision,
        decision_id=decision_id,
    )
