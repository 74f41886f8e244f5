"""Human approval of high-risk calls (architecture.md §1.3, §7 "Pending approval", §9.4).

Responsibilities, one module each:

- `models`: `Approval`, `ApprovalStatus`, `ExecutionState`; who may see and decide.
- `store`: the ``approvals`` table; every change a compare-and-swap under one lock.
- `holds`: waiting for a decision (in-process wake-ups plus database polling).
- `notify`: the optional webhook (JSON or Slack text) on each new request.
- `records`: the audit records of requests, decisions, expiries and refused decisions.
- `service`: `ApprovalService`, what the pipeline, REST API, CLI and console use:
  requesting, holding, expiring and reading approvals.
- `decisions`: `Decisions`, deciding one: who may (never a party to the request), the
  checks in order, the audit records; `ApprovalService.decide` is the way in.
- `gate`: the approval step of the call path (request, hold, claim or replay).
- `disabled`: `DisabledApprovals`, the null object of ``approvals.enabled: false``.
- `errors`: stable error codes of deciding and of held calls.

Invariants (§9.4): an approval binds principal (``sub`` + ``iss``), tool and the hash
of the full arguments; it is decided once (pending → approved/denied), by someone
who neither requested the call nor acts in its delegation chain, before it expires;
an approved approval runs its call at most once (``execution_state`` swap), and
retries get the recorded outcome.
"""

from gateway.approvals.models import Approval, ApprovalStatus, ExecutionState
from gateway.approvals.service import ApprovalService, Changes

__all__ = ["Approval", "ApprovalService", "ApprovalStatus", "Changes", "ExecutionState"]
