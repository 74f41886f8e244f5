"""The pure parts of `gateway.audit.search`: RFC 3339 times as leaf timestamps, and the
one-line summary the CLI prints."""

from __future__ import annotations

import pytest

from gateway.audit import AuditEntry
from gateway.audit.search import CheckedEntry, InclusionProof, PayloadState, Verification, leaf_time
from gateway.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T10:00:00Z", "2026-11-21T10:00:00.000Z"),
        ("2026-11-21T10:00:00.123456Z", "2026-11-21T10:00:00.123Z"),  # truncated, like leaves
        ("2026-11-21T12:00:00+02:00", "2026-11-21T10:00:00.000Z"),
        ("2026-11-21T10:00:00", "2026-11-21T10:00:00.000Z"),  # no offset: UTC
        ("2026-11-21T10:00Z", "2026-11-21T10:00:00.000Z"),
        ("2026-11-21", "2026-11-21T00:00:00.000Z"),
    ],
)
def test_times_become_leaf_timestamps(text: str, expected: str) -> None:
    assert leaf_time(text, "since") == expected


@pytest.mark.parametrize(
    "text", ["yesterday", "", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "1969-12-31"]
)
def test_bad_times_name_the_parameter(text: str) -> None:
    with pytest.raises(BadRequest, match=r"^--until .* is not an RFC 3339 time"):
        leaf_time(text, "--until")


def _checked(
    status: Verification, reason: str | None, proof: InclusionProof | None
) -> CheckedEntry:
    entry = AuditEntry(
        3, "2026-11-21T10:00:00.000Z", "call.attempt", "r", b"{}", bytes(32), {}, None
    )
    return CheckedEntry(entry, status, reason, None, PayloadState.PRESENT, None, proof, None)


def test_summaries() -> None:
    proof = InclusionProof(3, 8, bytes(32), (), "receipt")
    assert _checked(Verification.VERIFIED, None, proof).summary() == (
        "included in checkpoint 8, verified"
    )
    assert _checked(Verification.PENDING, "x", None).summary() == "not yet in a checkpoint"
    assert _checked(Verification.FAILED, "root mismatch", proof).summary() == (
        "FAILED: root mismatch"
    )
