"""What goes into the audit log (`AuditRecord`) and where its head is (`ChainHead`).
What comes out of it, `AuditEntry` and `ChainRow`, is `gateway.tlog.entries`'."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Lower-case dotted names ("call.attempt", "run.started"); checked on append so that
# filters and the verifier's rules can rely on the spelling.
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


@dataclass(frozen=True)
class AuditRecord:
    """One thing to append.

    ``ref`` ties related entries together (request, run or approval id). ``payload`` is
    the JSON object committed to by the leaf (already redacted by the caller).
    ``subject`` and ``tool`` are stored beside the payload for filtering only; they
    are erased with it and are not part of the commitment unless also in ``payload``.
    """

    kind: str
    ref: str
    payload: dict[str, Any]
    subject: str | None = None
    tool: str | None = None


@dataclass(frozen=True)
class ChainHead:
    """The newest entry: ``size`` entries exist, the last one has ``leaf_hash``."""

    size: int
    leaf_hash: bytes
    ts: str
