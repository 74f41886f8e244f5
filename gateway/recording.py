"""What of a caller's document may be written down: the one rule.

Everything the gateway records of what a caller sent (audit payloads, approval
records, run steps, logs) goes through `recordable`, so the pipeline, the executor and
the approvals never each decide it (a copy drifted once and leaked a refused plan's
secrets). The document is a policy input (architecture.md §5) or a part of one with the same
keys (``{"arguments": …}``), and the rule is:

1. A value the gateway refused as not I-JSON (`gateway.canonical.check_document`) is
   withheld where it stands, with a marker saying why: it cannot be written down as
   it is, and the rest of the attempt is still worth recording.
2. Without a policy decision that said what to redact — the engine failed closed, or
   the gateway refused before asking policy — every value the caller chose
   (`CALLER_VALUES`) is withheld: only policy knows which of them are secrets.
3. Otherwise the decision's ``redact`` pointers are applied (`gateway.redaction`).

What is withheld is recognisable (`is_withheld`), so that replaying a decision never
mistakes a marker for the caller's value.
"""

from __future__ import annotations

from typing import Any

from gateway.canonical import MAX_NESTING, check_document, withhold_unacceptable
from gateway.redaction import redact, replace_at
from gateway.types import Decision

WITHHELD = "[withheld: no valid policy decision said what to redact]"
_WITHHELD_PREFIX = "[withheld"

# Where a policy input holds values the caller chose, as `gateway.redaction` pointers:
# tool arguments or run inputs, and the arguments of each step of a submitted plan
# (and of its compensation).
CALLER_VALUES = (
    "/arguments",
    "/resource/plan/steps/*/arguments",
    "/resource/plan/steps/*/compensate/arguments",
)
# A policy input wraps a caller's document in a few levels of its own.
_DEPTH = MAX_NESTING + 8


def recordable(document: dict[str, Any], decision: Decision | None) -> dict[str, Any]:
    """A copy of ``document`` (a policy input, or part of one with its keys) that may be
    recorded after ``decision`` (None: no decision was made). Never modifies
    ``document``; returns it unchanged when nothing needs withholding or redacting."""
    try:
        check_document(document, max_depth=_DEPTH)
    except ValueError:
        document = withhold_unacceptable(document, max_depth=_DEPTH)
    if decision is None or not decision.says_what_to_redact:
        return replace_at(document, CALLER_VALUES, WITHHELD)
    return redact(document, decision.obligations.redact)


def recordable_arguments(arguments: Any, decision: Decision | None) -> Any:
    """`recordable` for a call's arguments alone."""
    return recordable({"arguments": arguments}, decision)["arguments"]


def is_withheld(value: Any) -> bool:
    """Whether ``value`` is a marker `recordable` (or the canonical module) put in place
    of something withheld."""
    return isinstance(value, str) and value.startswith(_WITHHELD_PREFIX)
