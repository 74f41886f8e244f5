"""What a reader of the log gets of one entry: `AuditEntry` (with its payload read)
and `ChainRow` (bytes only, what the chain verifier reads)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class AuditEntry:
    """One stored entry as read back.

    ``leaf`` are the verbatim leaf bytes (the truth); ``ts``, ``kind`` and ``ref`` are
    the indexed copies. ``payload_jcs`` are the stored payload bytes (what the leaf
    commits to) and ``payload`` what they say, read with numbers as doubles
    (`gateway.canonical.parse_json`). ``payload``, ``payload_jcs``, ``salt``,
    ``subject`` and ``tool`` are ``None`` once the payload has been erased; ``payload``
    alone is ``None`` when the stored bytes are not a JSON object (a damaged entry,
    which checking reports).
    """

    seq: int
    ts: str
    kind: str
    ref: str
    leaf: bytes
    leaf_hash: bytes
    payload: dict[str, Any] | None
    salt: bytes | None
    subject: str | None = None
    tool: str | None = None
    payload_jcs: bytes | None = None

    def payload_line(self) -> str:
        """The payload on one line, for people: its JSON, or why there is none."""
        if self.payload_jcs is None:
            return "(erased)"
        if self.payload is None:
            return "(stored, but not a JSON object: the entry is damaged)"
        return json.dumps(self.payload, sort_keys=True, ensure_ascii=False)


class ChainRow(NamedTuple):
    """What the chain verifier reads of one entry: bytes and the indexed copies, no
    parsed payload. ``payload_jcs`` are the stored canonical payload bytes (the
    commitment's input), ``None`` with ``salt`` once erased."""

    seq: int
    ts: str
    kind: str
    ref: str
    leaf: bytes
    leaf_hash: bytes
    salt: bytes | None
    payload_jcs: bytes | None
