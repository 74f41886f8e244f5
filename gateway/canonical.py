"""Canonical JSON (RFC 8785, JCS) and the hashes the gateway derives from it.

Every hash and signature of the gateway is over JCS bytes, so this is the one place
that produces them. Most documents the gateway canonicalizes (payloads, policy
inputs) hold only strings, booleans, null and small integers under ASCII keys; for
those, the standard library's C encoder with sorted keys and no whitespace produces
exactly the JCS bytes, several times faster than the reference implementation. Any
document outside that shape (a float, a big integer, a non-ASCII key, whose ordering
or formatting JCS defines differently) goes through `rfc8785`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

# JCS numbers are IEEE-754 doubles; integers beyond this are not exact (RFC 8785 §3.2.2.3).
_MAX_SAFE_INTEGER = 2**53 - 1

_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def _plain(value: Any) -> bool:
    """True when the stdlib encoding of `value` is its JCS encoding.

    Python and JCS escape strings identically (quote, backslash, control characters
    as short escapes or lowercase \\u00xx, everything else literal) and sort ASCII
    keys identically; they differ on floats, integers beyond 2^53 and the order of
    non-ASCII keys (code points vs UTF-16 units).
    """
    if value is None or value is True or value is False or type(value) is str:
        return True
    if type(value) is int:
        return -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER
    if type(value) is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(item) for item in value)
    return False


def jcs(value: Any) -> bytes:
    """The RFC 8785 bytes of `value`. Raises ValueError for what JSON cannot represent
    exactly (NaN, integers beyond 2^53, non-string keys, lone surrogates, objects)."""
    if _plain(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the reference implementation reject it
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not representable as canonical JSON: {exc}") from None


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(jcs(value)).hexdigest()


def arguments_hash(arguments: dict[str, Any]) -> str:
    """Binds approvals and replays to the exact arguments (hex SHA-256 of their JCS)."""
    return sha256_hex(arguments)


# The deepest nesting of objects and lists the gateway accepts in what callers send
# (tool arguments, plan inputs and step arguments). Its readers (this module's
# canonicalizer, JSON Schema, redaction, rego-cpp) recurse per level, and a few
# hundred levels, well inside the body limit, exhaust Python's recursion limit. No
# tool call needs this many.
MAX_NESTING = 64


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and lists more than ``limit`` levels deep (an
    object or list at the top is level 1). Iterative: the documents it turns away are
    the ones a recursive walk (this module's canonicalizer, JSON Schema, redaction)
    would fail on with RecursionError."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
