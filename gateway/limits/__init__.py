"""Limits on calls, shared by every replica (docs/decisions/0031).

Policy puts limits on a call it allows, as the ``limits`` obligation of its decision
(`gateway.types.Limit`): at most N calls per window, at most M at once, counted per
a scope policy chose (principal, tool, upstream, …). The pipeline asks `Limiter` to
admit the call before it is held or forwarded; the counters are rows of the one
database every replica shares (`store`), so a limit holds across replicas.

Keeps: a call with limits is forwarded only after every one of its counters admitted
it, in one transaction (all or none are counted); a counter that cannot be read or
written refuses the call as unavailable, never lets it through uncounted (fail
closed); a concurrency slot of a process that dies stops counting after its lease.
"""

from gateway.limits.limiter import Admission, Limiter
from gateway.limits.store import LimitStore
from gateway.limits.windows import LIMIT_KINDS, Refusal, limit_key

__all__ = ["LIMIT_KINDS", "Admission", "LimitStore", "Limiter", "Refusal", "limit_key"]
