"""parse_leaf's fast path (a byte pattern for plain leaves) decides exactly as the
general parser (JSON parse + RFC 8785 round trip) does, on valid and mutated leaves;
and build_leaf, which writes the leaf out without the canonicalizer, writes the bytes
the reference implementation does."""

from __future__ import annotations

import base64
import random

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gateway.tlog.errors import LeafFormatError
from gateway.tlog.leaf import Leaf, _parse_general, _parse_plain_leaf, build_leaf, parse_leaf

STRINGS = ["", "req-1", "ünïcödé", "日本", 'quote"d', "back\\slash", "tab\there", "\u2028", "\x7f"]


def leaves() -> list[bytes]:
    out = []
    for i, text in enumerate(STRINGS):
        for seq in (0, 7, 2**53 - 1, 2**53):
            try:
                out.append(
                    build_leaf(
                        origin=f"log/{text}" if i % 2 else "test.example/audit",
                        seq=seq,
                        prev=bytes([i]) * 32,
                        ts="2026-02-28T23:59:59.999Z",
                        kind="call.attempt" if i % 3 else "erasure",
                        ref=text,
                        commitment=bytes([255 - i]) * 32,
                    )
                )
            except ValueError:
                continue  # seq beyond 2^53 cannot be canonical JSON
    return out


def outcome(parse: object, data: bytes) -> Leaf | str:
    try:
        return parse(data)  # type: ignore[operator, no-any-return]
    except LeafFormatError:
        return "rejected"


def test_plain_leaves_take_the_fast_path() -> None:
    plain = build_leaf(
        origin="test.example/audit",
        seq=41,
        prev=bytes(32),
        ts="2026-11-21T10:00:00.123Z",
        kind="call.decision",
        ref="req_3f2a",
        commitment=bytes(range(32)),
    )
    assert _parse_plain_leaf(plain) == _parse_general(plain)


@pytest.mark.parametrize("data", leaves())
def test_same_verdict_on_valid_leaves(data: bytes) -> None:
    assert outcome(parse_leaf, data) == outcome(_parse_general, data) != "rejected"


def test_same_verdict_on_mutated_leaves() -> None:
    rng = random.Random(8785)
    alphabet = b'{}":,0123456789AEIMQUYcgkosw+/=\\ \x00\x1fazZ\xc3\xa9\xff-.T'
    for data in leaves():
        for _ in range(300):
            mutated = bytearray(data)
            position = rng.randrange(len(mutated))
            action = rng.randrange(3)
            if action == 0:
                mutated[position] = rng.choice(alphabet)
            elif action == 1:
                del mutated[position]
            else:
                mutated.insert(position, rng.choice(alphabet))
            assert outcome(parse_leaf, bytes(mutated)) == outcome(_parse_general, bytes(mutated))


@pytest.mark.parametrize(
    "ts", ["2026-02-29T00:00:00.000Z", "2026-01-01T24:00:00.000Z", "2026-01-01T23:59:60.000Z"]
)
def test_impossible_timestamps_are_rejected_on_both_paths(ts: str) -> None:
    data = build_leaf(
        origin="o", seq=1, prev=bytes(32), ts=ts, kind="k", ref="r", commitment=bytes(32)
    )
    assert outcome(parse_leaf, data) == outcome(_parse_general, data) == "rejected"


# --- build_leaf writes the bytes the reference implementation does ------------------

_text = st.text(
    st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from('"\\\n\x00\x7f\u2028')),
    max_size=12,
)


@given(
    origin=_text,
    seq=st.integers(0, 2**53 - 1),
    prev=st.binary(min_size=32, max_size=32),
    ts=_text,
    kind=_text,
    ref=_text,
    commitment=st.binary(min_size=32, max_size=32),
)
def test_build_leaf_equals_rfc8785_of_the_leaf_object(
    origin: str, seq: int, prev: bytes, ts: str, kind: str, ref: str, commitment: bytes
) -> None:
    leaf = build_leaf(
        origin=origin, seq=seq, prev=prev, ts=ts, kind=kind, ref=ref, commitment=commitment
    )
    expected = {
        "v": 1,
        "log": origin,
        "seq": seq,
        "prev": base64.b64encode(prev).decode(),
        "ts": ts,
        "kind": kind,
        "ref": ref,
        "payload": base64.b64encode(commitment).decode(),
    }
    assert leaf == rfc8785.dumps(expected)


@pytest.mark.parametrize(
    "change",
    [{"seq": 2**53}, {"seq": -1}, {"seq": True}, {"ref": "\ud800"}, {"kind": 7}],
    ids=["seq-beyond-2^53", "negative-seq", "bool-seq", "lone-surrogate", "not-a-string"],
)
def test_build_leaf_refuses_what_is_not_a_canonical_leaf(change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "origin": "test.example/audit",
        "seq": 1,
        "prev": bytes(32),
        "ts": "2026-11-21T10:00:00.123Z",
        "kind": "call.attempt",
        "ref": "r",
        "commitment": bytes(32),
    }
    with pytest.raises(ValueError):
        build_leaf(**{**fields, **change})  # type: ignore[arg-type]
