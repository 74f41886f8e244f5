"""Human approval of high-risk calls (architecture.md §1.3, §7 "Pending approval", §9.4).

Responsibilities, one module each:

- `models`: `Approval`, `ApprovalStatus`, `ExecutionState`; who may see and decide.
- `store`: the ``approvals`` table; every change a compare-and-swap under one lock.
- `holds`: waiting for a decision (in-process wake-ups plus database polling).
- `notify`: the optional webhook (JSON or Slack text) on each new request.
- `service`: `ApprovalService`, what the pipeline, REST API, CLI and console use.
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
