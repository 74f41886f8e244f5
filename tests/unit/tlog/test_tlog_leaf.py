"""The v1 leaf format, hashes and commitment, pinned by known answers.

The expected bytes and digests below were written out by hand from architecture.md §6 and
hashed with plain hashlib, independently of gateway.tlog.leaf.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.tlog.errors import LeafFormatError
from gateway.tlog.leaf import (
    ZERO_HASH,
    build_leaf,
    canonical_json,
    commitment_of_jcs,
    format_ts,
    leaf_hash,
    parse_leaf,
    payload_commitment,
)

ORIGIN = "example.org/agw"

SALT_0 = bytes(range(32))
PAYLOAD_0 = {"tool": "github__create_issue", "é": "ü", "arguments": {"title": "Bug", "n": 1}}
PAYLOAD_0_JCS = '{"arguments":{"n":1,"title":"Bug"},"tool":"github__create_issue","é":"ü"}'
COMMITMENT_0 = bytes.fromhex("9cc2fee1dae65a4adaa5e7dd70376b5c3d5cd3b3ff84017fc066f8cca71bee23")
LEAF_0 = (
    b'{"kind":"call.attempt","log":"example.org/agw",'
    b'"payload":"nML+4drmWkrapefdcDdrXD1c07P/hAF/wGb4zKcb7iM=",'
    b'"prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","ref":"req-1","seq":0,'
    b'"ts":"2026-11-21T10:00:00.123Z","v":1}'
)
LEAF_HASH_0 = bytes.fromhex("98103601f1efe38865e13f327e8aefce0aa3e46dd79125090f1c145ee2b69b0d")

# Second entry: empty payload, and a ref that needs JSON escapes (quote, newline, U+001F).
SALT_1 = b"\xff" * 32
COMMITMENT_1 = bytes.fromhex("6774c591fb528656e876d04a987b615469d38b6fb15d030a0eea4449a0127597")
LEAF_1 = (
    b'{"kind":"call.decision","log":"example.org/agw",'
    b'"payload":"Z3TFkftShlbodtBKmHthVGnTi2+xXQMKDupESaASdZc=",'
    b'"prev":"mBA2AfHv44hl4T8yforvzgqj5G3XkSUJDxwUXuK2mw0=","ref":"a\\"b\\n\\u001f","seq":1,'
    b'"ts":"2026-11-21T10:00:01.000Z","v":1}'
)
LEAF_HASH_1 = bytes.fromhex("bf4225c6f8d11d1064b44ada6e2f1785478c269c893649f686a829ce9b76f111")


def test_payload_jcs_known_answer() -> None:
    assert canonical_json(PAYLOAD_0) == PAYLOAD_0_JCS.encode("utf-8")


def test_payload_commitment_known_answer() -> None:
    assert payload_commitment(SALT_0, PAYLOAD_0) == COMMITMENT_0
    assert payload_commitment(SALT_1, {}) == COMMITMENT_1


def test_leaf_known_answer() -> None:
    leaf = build_leaf(
        origin=ORIGIN,
        seq=0,
        prev=ZERO_HASH,
        ts="2026-11-21T10:00:00.123Z",
        kind="call.attempt",
        ref="req-1",
        commitment=COMMITMENT_0,
    )
    assert leaf == LEAF_0
    assert leaf_hash(leaf) == LEAF_HASH_0


def test_second_leaf_chains_to_first_and_escapes_ref() -> None:
    leaf = build_leaf(
        origin=ORIGIN,
        seq=1,
        prev=LEAF_HASH_0,
        ts="2026-11-21T10:00:01.000Z",
        kind="call.decision",
        ref='a"b\n\x1f',
        commitment=COMMITMENT_1,
    )
    assert leaf == LEAF_1
    assert leaf_hash(leaf) == LEAF_HASH_1


def test_parse_leaf_returns_fields() -> None:
    parsed = parse_leaf(LEAF_1)
    assert parsed.v == 1
    assert parsed.log == ORIGIN
    assert parsed.seq == 1
    assert parsed.prev == LEAF_HASH_0
    assert parsed.ts == "2026-11-21T10:00:01.000Z"
    assert parsed.kind == "call.decision"
    assert parsed.ref == 'a"b\n\x1f'
    assert parsed.commitment == COMMITMENT_1


def test_commitment_depends_on_salt_and_payload() -> None:
    assert payload_commitment(SALT_1, PAYLOAD_0) != COMMITMENT_0
    assert payload_commitment(SALT_0, {**PAYLOAD_0, "tool": "x"}) != COMMITMENT_0
    # Key order does not matter: the commitment is over the canonical form.
    reordered = dict(reversed(list(PAYLOAD_0.items())))
    assert payload_commitment(SALT_0, reordered) == COMMITMENT_0


def test_commitment_rejects_short_salt() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        commitment_of_jcs(b"short", b"{}")


@pytest.mark.parametrize(
    "payload",
    [
        {"x": float("nan")},
        {"x": 2**60 + 1},
        {"x": object()},
        {1: "non-string key"},
        {"x": "\ud800"},
    ],
    ids=["nan", "int-not-a-double", "object", "int-key", "lone-surrogate"],
)
def test_canonical_json_rejects_unrepresentable(payload: dict) -> None:
    with pytest.raises(ValueError, match="canonical JSON"):
        canonical_json(payload)


def test_format_ts_is_utc_with_milliseconds_truncated() -> None:
    moment = datetime(2026, 11, 21, 11, 0, 0, 123999, tzinfo=timezone(timedelta(hours=1)))
    assert format_ts(moment) == "2026-11-21T10:00:00.123Z"
    assert format_ts(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"


def test_format_ts_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone"):
        format_ts(datetime(2026, 11, 21, 10, 0, 0))


def test_build_leaf_rejects_wrong_hash_sizes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        build_leaf(
            origin=ORIGIN, seq=0, prev=b"", ts="x", kind="k", ref="", commitment=COMMITMENT_0
        )


def _mutated(**changes: object) -> bytes:
    obj = json.loads(LEAF_0)
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return canonical_json(obj)


_DROP = object()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1]", "not a JSON object"),
        (LEAF_0.replace(b",", b", ", 1), "canonical"),
        (
            LEAF_0.replace(
                b'"kind":"call.attempt","log":"example.org/agw"',
                b'"log":"example.org/agw","kind":"call.attempt"',
            ),
            "canonical",
        ),
        (LEAF_0.replace(b'"v":1}', b'"v":1,"v":1}'), "canonical"),
        (LEAF_0.replace(b'"v":1}', b'"v":NaN}'), "not valid JSON"),
        (LEAF_0.replace(b'"v":1}', b'"v":1.0}'), "canonical"),
        (LEAF_0.replace(b"req-1", b"req-\\u0031"), "canonical"),
        (_mutated(v=2), "version"),
        (_mutated(v=True), "version"),
        (_mutated(seq=-1), "seq"),
        (_mutated(seq="0"), "seq"),
        (_mutated(ref=None), "'ref' must be a string"),
        (_mutated(kind=""), "'kind' is empty"),
        (_mutated(log=""), "origin"),
        (_mutated(extra=1), "unexpected ['extra']"),
        (_mutated(payload=_DROP), "missing ['payload']"),
        (_mutated(prev="AAAA"), "32 bytes"),
        (_mutated(prev="!" * 44), "base64"),
        (_mutated(prev=base64.urlsafe_b64encode(b"\xfb" * 32).decode()), "base64"),
        # Same 32 bytes, but non-zero padding bits: a second spelling of one hash.
        (_mutated(prev="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB="), "canonical base64"),
        (_mutated(ts="2026-11-21T10:00:00Z"), "not of the form"),
        (_mutated(ts="2026-11-21T10:00:00.123+00:00"), "not of the form"),
        (_mutated(ts="2026-02-30T10:00:00.123Z"), "not a valid date"),
    ],
)
def test_parse_leaf_rejects(data: bytes, message: str) -> None:
    with pytest.raises(LeafFormatError, match=re.escape(message)):
        parse_leaf(data)


def test_parse_accepts_what_build_produces_with_unicode() -> None:
    leaf = build_leaf(
        origin="ログ/監査",
        seq=2**53 - 1,
        prev=LEAF_HASH_1,
        ts="2026-11-21T10:00:01.999Z",
        kind="tool.drift",
        ref="日本\u2028😀",
        commitment=COMMITMENT_0,
    )
    parsed = parse_leaf(leaf)
    assert (parsed.log, parsed.seq, parsed.ref) == ("ログ/監査", 2**53 - 1, "日本\u2028😀")
    assert "😀".encode() in leaf  # JCS writes non-ASCII as UTF-8, not \u escapes
