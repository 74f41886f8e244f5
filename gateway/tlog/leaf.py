"""The version-1 leaf (architecture.md §6): building, hashing, parsing. Pure functions.

A leaf is the RFC 8785 (JCS) canonical JSON of::

    {"v":1, "log":origin, "seq":N, "prev":b64(leaf_hash(N-1)), "ts":"…Z",
     "kind":kind, "ref":ref, "payload":b64(commitment)}

Its bytes are what gets hashed, stored and verified; nothing is ever re-serialized
from parsed fields. This format is a published contract: changing any byte of it
needs a new ``v``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from gateway.canonical import jcs
from gateway.timestamps import format_utc
from gateway.tlog.errors import LeafFormatError

LEAF_VERSION = 1
HASH_SIZE = 32
SALT_SIZE = 32
# prev of entry 0.
ZERO_HASH = bytes(HASH_SIZE)
_MAX_SAFE_INTEGER = 2**53 - 1  # JCS integers beyond this are not exact
# RFC 6962 leaf hash prefix; interior nodes use 0x01 (merkle, later).
LEAF_HASH_PREFIX = b"\x00"
# Domain separation: a payload commitment can never be mistaken for another hash.
PAYLOAD_DOMAIN = b"agw-payload-v1\x00"

_LEAF_KEYS = frozenset({"v", "log", "seq", "prev", "ts", "kind", "ref", "payload"})
_TS_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


# The one canonicalizer and timestamp format of the project (gateway.canonical,
# gateway.timestamps), under the names this module's callers use.
canonical_json = jcs
format_ts = format_utc


def b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as in C2SP notes."""
    return base64.b64encode(data).decode("ascii")


def payload_commitment(salt: bytes, payload: Mapping[str, Any]) -> bytes:
    """SHA-256("agw-payload-v1\\0" ‖ salt ‖ JCS(payload)). Requires a 32-byte salt."""
    return commitment_of_jcs(salt, canonical_json(payload))


def commitment_of_jcs(salt: bytes, payload_jcs: bytes) -> bytes:
    """The commitment when the payload is already canonical bytes (avoids a second
    canonicalization on the append path)."""
    if len(salt) != SALT_SIZE:
        raise ValueError(f"payload salt must be {SALT_SIZE} bytes, got {len(salt)}")
    return hashlib.sha256(PAYLOAD_DOMAIN + salt + payload_jcs).digest()


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf bytes)."""
    return hashlib.sha256(LEAF_HASH_PREFIX + leaf).digest()


def build_leaf(
    *, origin: str, seq: int, prev: bytes, ts: str, kind: str, ref: str, commitment: bytes
) -> bytes:
    """The canonical leaf bytes. Requires 32-byte ``prev`` and ``commitment``, a
    ``seq`` from 0 to 2^53 - 1 and strings that are Unicode text (ValueError otherwise).

    Written out in JCS key order rather than through `canonical_json`: every append
    builds one per entry, and a leaf's only free-form values are strings, which JCS and
    the standard library's encoder escape identically (tests/unit/tlog prove the bytes
    equal to the reference implementation's)."""
    if len(prev) != HASH_SIZE or len(commitment) != HASH_SIZE:
        raise ValueError("prev and commitment must be 32-byte hashes")
    if type(seq) is not int or not 0 <= seq <= _MAX_SAFE_INTEGER:
        raise ValueError(f"leaf seq must be an integer from 0 to 2^53 - 1, got {seq!r}")
    for value in (origin, ts, kind, ref):
        if type(value) is not str:
            raise ValueError(f"leaf fields must be strings, got {type(value).__name__}")
    text = (
        f'{{"kind":{encode_basestring(kind)},"log":{encode_basestring(origin)},'
        f'"payload":"{b64(commitment)}","prev":"{b64(prev)}","ref":{encode_basestring(ref)},'
        f'"seq":{seq},"ts":{encode_basestring(ts)},"v":{LEAF_VERSION}}}'
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("leaf strings must be Unicode text (no lone surrogates)") from None


class Leaf(NamedTuple):
    """The fields of a parsed leaf. ``commitment`` is the decoded ``payload`` field."""

    # A NamedTuple, not a frozen dataclass: the verifier builds one per entry and the
    # dataclass's __init__ alone cost more than parsing the fast-path leaf.

    v: int
    log: str
    seq: int
    prev: bytes
    ts: str
    kind: str
    ref: str
    commitment: bytes


def parse_leaf(data: bytes) -> Leaf:
    """Parses leaf bytes, accepting only the exact canonical form of a v1 leaf.

    Raises LeafFormatError on anything else: invalid JSON or UTF-8, bytes that differ
    from their own JCS re-serialization (whitespace, key order, escapes, duplicate
    keys), missing or extra keys, wrong types, non-canonical base64, wrong hash sizes,
    a malformed timestamp.
    """
    plain = _parse_plain_leaf(data)
    return plain if plain is not None else _parse_general(data)


def _parse_general(data: bytes) -> Leaf:
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LeafFormatError(f"leaf is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise LeafFormatError("leaf is not a JSON object")
    try:
        canonical = canonical_json(obj)
    except ValueError as exc:
        raise LeafFormatError(f"leaf cannot be canonicalized: {exc}") from None
    if canonical != data:
        raise LeafFormatError("leaf bytes are not in RFC 8785 canonical form")
    if set(obj) != _LEAF_KEYS:
        missing = sorted(_LEAF_KEYS - set(obj))
        extra = sorted(set(obj) - _LEAF_KEYS)
        raise LeafFormatError(f"leaf keys are wrong (missing {missing}, unexpected {extra})")
    v = obj["v"]
    if type(v) is not int or v != LEAF_VERSION:
        raise LeafFormatError(f"unsupported leaf version {v!r} (this verifier knows v1)")
    seq = obj["seq"]
    if type(seq) is not int or seq < 0:
        raise LeafFormatError(f"leaf seq must be a non-negative integer, got {seq!r}")
    for key in ("log", "ts", "kind", "ref", "prev", "payload"):
        if not isinstance(obj[key], str):
            raise LeafFormatError(f"leaf {key!r} must be a string")
    if not obj["log"]:
        raise LeafFormatError("leaf 'log' (the origin) is empty")
    if not obj["kind"]:
        raise LeafFormatError("leaf 'kind' is empty")
    _check_ts(obj["ts"])
    return Leaf(
        v=v,
        log=obj["log"],
        seq=seq,
        prev=_decode_hash(obj["prev"], "prev"),
        ts=obj["ts"],
        kind=obj["kind"],
        ref=obj["ref"],
        commitment=_decode_hash(obj["payload"], "payload"),
    )


# The byte layout of a canonical v1 leaf whose strings need no JSON escape: keys in
# JCS order, no whitespace, canonical base64 of 32 bytes (the last character before
# "=" carries no stray bits), a decimal seq without leading zeros. For such bytes,
# being canonical is exactly matching this pattern, so the JSON parse and the JCS
# re-serialization (most of the verifier's time) can be skipped; anything else takes
# the general path, which decides the same way.
_PLAIN_STRING = rb'"([^"\\\x00-\x1f]*)"'
_HASH_B64 = rb'"([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)"'
_PLAIN_LEAF = re.compile(
    rb'\{"kind":'
    + _PLAIN_STRING
    + rb',"log":'
    + _PLAIN_STRING
    + rb',"payload":'
    + _HASH_B64
    + rb',"prev":'
    + _HASH_B64
    + rb',"ref":'
    + _PLAIN_STRING
    + rb',"seq":(0|[1-9][0-9]{0,15}),"ts":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)","v":1\}'
)


def _parse_plain_leaf(data: bytes) -> Leaf | None:
    """The leaf, if ``data`` has the plain canonical layout; None to use the general
    parser (which also produces every error message)."""
    match = _PLAIN_LEAF.fullmatch(data) if isinstance(data, bytes) else None
    if match is None:
        return None
    kind_raw, log_raw, payload_b64, prev_b64, ref_raw, seq_raw, ts_raw = match.groups()
    seq = int(seq_raw)
    if not kind_raw or not log_raw or seq > _MAX_SAFE_INTEGER:
        return None
    try:
        kind, log, ref = kind_raw.decode(), log_raw.decode(), ref_raw.decode()
    except UnicodeDecodeError:
        return None
    ts = ts_raw.decode("ascii")
    try:
        datetime.fromisoformat(ts[:-1])  # the shape is matched; is it a real instant?
    except ValueError:
        return None
    # The pattern admits only base64 characters: the lenient decoder is exact here.
    return Leaf(
        LEAF_VERSION,
        log,
        seq,
        binascii.a2b_base64(prev_b64),
        ts,
        kind,
        ref,
        binascii.a2b_base64(payload_b64),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_hash(text: str, key: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise LeafFormatError(f"leaf {key!r} is not valid base64") from None
    # Re-encoding catches non-zero padding bits: one hash, one spelling.
    if len(raw) != HASH_SIZE or b64(raw) != text:
        raise LeafFormatError(f"leaf {key!r} must be the canonical base64 of 32 bytes")
    return raw


def _check_ts(ts: str) -> None:
    if not _TS_PATTERN.fullmatch(ts):
        raise LeafFormatError(f"leaf 'ts' {ts!r} is not of the form 2026-11-21T10:00:00.123Z")
    try:
        # Same verdicts as strptime on this exact shape (calendar, 0-23 h, 0-59 min
        # and s), 30x faster.
        datetime.fromisoformat(ts[:-1])
    except ValueError:
        raise LeafFormatError(f"leaf 'ts' {ts!r} is not a valid date and time") from None
