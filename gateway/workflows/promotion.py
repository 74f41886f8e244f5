"""Promoting a version to a channel: a ``workflow/promote`` decision, held like a call.

    gateway workflows promote NAME@VERSION --to prod

Policy decides (``resource``: the workflow version, the channel, what the channel runs
now). Allowed: the channel moves, audited ``workflow.promoted`` first. Allowed once
approved: an approval bound to the requester and (name, version, hash, channel) is
requested (or found) in the approvals engine, and the answer is "pending approval";
an approver — never the requester, nor anyone in its delegation chain — decides it
in the console, CLI or REST; the requester promotes again and the approved promotion
is carried out once (the approval's single execution). Rollback is a promotion of
the version the channel ran before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.approvals.models import ApprovalStatus, ExecutionState
from gateway.canonical import arguments_hash, sha256_hex
from gateway.operations import Operation
from gateway.types import ClientInfo, Principal, Transport
from gateway.workflows.errors import WorkflowRefused

if TYPE_CHECKING:
    from gateway.workflows.service import Workflows

PROMOTE_TOOL = "workflow__promote"
PROMOTE_DEFINITION_HASH = sha256_hex({"name": PROMOTE_TOOL, "version": 1})


class Promotions:
    def __init__(self, workflows: Workflows) -> None:
        self._workflows = workflows

    async def promote(
        self,
        principal: Principal,
        ref: str,
        channel: str,
        *,
        request_id: str,
        transport: Transport = "rest",
        client: ClientInfo | None = None,
    ) -> dict[str, Any]:
        """Returns ``{"status": "promoted" | "unchanged" | "pending_approval", …}``;
        raises `WorkflowRefused` when policy or an approver refused it."""
        workflows = self._workflows
        published, named_channel = await workflows.resolve(ref)
        if named_channel is not None:
            raise WorkflowRefused(f"promote a version (NAME@VERSION), not a channel: {ref}")
        current = await workflows._db(workflows.store.channel, published.name, channel)
        target = {
            "name": published.name,
            "version": published.version,
            "id": published.id,
            "hash": published.content_hash,
        }
        answer = {"workflow": target, "channel": channel}
        if current is not None and current["version"] == published.version:
            return {**answer, "status": "unchanged", "previous": published.version}
        resource = {
            "workflow": target,
            "channel": channel,
            "current": {"version": current["version"], "id": current["workflow_id"]}
            if current
            else None,
        }
        decision = await workflows.decide(
            principal, "workflow/promote", resource, request_id, transport, client
        )
        ref_text = f"{published.name}@{published.version}"
        if not decision.allow:
            await workflows.record("workflow.refused", ref_text, principal, resource, decision)
            raise WorkflowRefused(
                "promotion refused: " + ("; ".join(decision.reasons) or "denied by policy"),
                details={"decision": decision.to_dict()},
            )
        approval_id = None
        if decision.require_approval:
            approvals = workflows.executor.deps.approvals
            arguments = {**target, "channel": channel}
            approval = await approvals.usable(principal, PROMOTE_TOOL, arguments_hash(arguments))
            if approval is None or approval.execution_state is ExecutionState.DONE:
                # None yet, or the one given was used (e.g. since rolled back): ask anew.
                call = Operation(
                    principal=principal,
                    method="tools/call",
                    target=PROMOTE_TOOL,
                    arguments=arguments,
                    transport=transport,
                    request_id=request_id,
                    client=client or ClientInfo(),
                )
                approval = await approvals.request(call, PROMOTE_DEFINITION_HASH, decision)
            if approval.status is ApprovalStatus.DENIED:
                raise WorkflowRefused(
                    f"promotion denied by {approval.decided_by}: {approval.decision_reason}",
                    details={"approval_id": approval.id},
                )
            if approval.status is not ApprovalStatus.APPROVED:
                return {**answer, "status": "pending_approval", "approval_id": approval.id}
            if await approvals.claim(approval, request_id) is None:
                raise WorkflowRefused(
                    f"approval {approval.id} was already used for this promotion",
                    details={"approval_id": approval.id},
                )
            approval_id = approval.id
        previous = current["version"] if current else None
        # The channel moves only once the decision (and approval) allowing it is durable.
        await workflows.record(
            "workflow.promoted",
            ref_text,
            principal,
            resource,
            decision,
            previous_version=previous,
            approval_id=approval_id,
        )
        await workflows._db(
            lambda: workflows.store.point(
                published, channel, promoted_by=principal.sub, approval_id=approval_id
            )
        )
        if approval_id is not None:
            outcome = {"status": "promoted", "channel": channel, "version": published.version}
            await workflows.executor.deps.approvals.finish(approval_id, request_id, outcome)
        return {**answer, "status": "promoted", "previous": previous, "approval_id": approval_id}
