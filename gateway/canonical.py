"""Canonical JSON (RFC 8785, JCS) and the hashes the gateway derives from it.

Every hash and signature of the gateway is over JCS bytes, so this is the one place
that produces them. Most documents the gateway canonicalizes (payloads, policy
inputs) hold only strings, booleans, null and small integers under ASCII keys; for
those, the standard library's C encoder with sorted keys and no whitespace produces
exactly the JCS bytes, several times faster than the reference implementation. Any
document outside that shape (a float, a big integer, a non-ASCII key, whose ordering
or formatting JCS defines differently) is written by `_write`, which formats numbers
as ECMAScript does and orders keys by UTF-16 code units. The reference
implementation, `rfc8785`, is the oracle of the property tests that prove both equal
to it (tests/unit/test_canonical.py, docs/decisions/0026).
"""

from __future__ import annotations

import hashlib
import json
import math
from json.encoder import encode_basestring
from typing import Any

# JCS numbers are IEEE-754 doubles; integers beyond this are not exact (RFC 8785 §3.2.2.3).
_MAX_SAFE_INTEGER = 2**53 - 1

_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


# Containers `_plain` walks before it starts remembering those it has seen: a document
# that refers to itself (a YAML anchor can build one) must not loop forever, and the
# common document is far smaller.
_PLAIN_FAST_CONTAINERS = 10_000


def _plain(value: Any) -> bool:
    """True when the stdlib encoding of `value` is its JCS encoding.

    Python and JCS escape strings identically (quote, backslash, control characters
    as short escapes or lowercase \\u00xx, everything else literal) and sort ASCII
    keys identically; they differ on floats, integers beyond 2^53 and the order of
    non-ASCII keys (code points vs UTF-16 units).

    Iterative, with the common types tested first: it runs over every audit payload,
    and this walk took as long as the encoding itself when it recursed
    (docs/decisions/0026).
    """
    stack = [value]
    pop = stack.pop
    extend = stack.extend
    containers = 0
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is int:
            if not -_MAX_SAFE_INTEGER <= item <= _MAX_SAFE_INTEGER:
                return False
            continue
        else:
            return False
        containers += 1
        if containers > _PLAIN_FAST_CONTAINERS:
            return _plain_once_each(value)
    return True


def _plain_once_each(value: Any) -> bool:
    """`_plain` that looks at each container once: ends on a document that refers to
    itself (which the encoder then refuses)."""
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if id(item) in seen:
                continue
            seen.add(id(item))
            if kind is dict:
                if not all(type(key) is str and key.isascii() for key in item):
                    return False
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif kind is int:
            if not -_MAX_SAFE_INTEGER <= item <= _MAX_SAFE_INTEGER:
                return False
        elif not (kind is str or kind is bool or item is None):
            return False
    return True


def jcs(value: Any) -> bytes:
    """The RFC 8785 bytes of `value`. Raises ValueError for what JSON cannot represent
    exactly (NaN, integers no double equals, non-string keys, lone surrogates,
    objects): `check_document` keeps such values out of everything the gateway
    canonicalizes."""
    try:
        if _plain(value):
            return _encode(value).encode("utf-8")
        parts: list[str] = []
        _write(value, parts)
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not representable as canonical JSON: a lone surrogate") from None
    except RecursionError:
        raise ValueError(
            "not representable as canonical JSON: nested too deeply, or refers to itself"
        ) from None


def _write(value: Any, parts: list[str]) -> None:
    """Appends the JCS text of ``value`` to ``parts`` (RFC 8785 §3.2)."""
    kind = type(value)
    if kind is str:
        parts.append(encode_basestring(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif kind is int:
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            parts.append(str(value))
        elif _is_exact_double(value):
            # The 1e17 a client sent as 100000000000000000: the same number as a double.
            parts.append(_number(float(value)))
        else:
            raise ValueError(f"not representable as canonical JSON: the integer {value}")
    elif kind is float:
        parts.append(_number(value))
    elif kind is dict:
        if not all(type(key) is str for key in value):
            raise ValueError("not representable as canonical JSON: a key is not a string")
        parts.append("{")
        # Object members sort by the UTF-16 code units of their names (§3.2.3):
        # big-endian UTF-16 bytes compare in that order. ASCII names compare alike.
        keys = sorted(value, key=_utf16) if not "".join(value).isascii() else sorted(value)
        for index, key in enumerate(keys):
            if index:
                parts.append(",")
            parts.append(encode_basestring(key))
            parts.append(":")
            _write(value[key], parts)
        parts.append("}")
    elif kind is list:
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    else:
        raise ValueError(f"not representable as canonical JSON: a {kind.__name__}")


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _number(value: float) -> str:
    """A double as ECMAScript's Number::toString writes it (ECMA-262 §6.1.6.1.20, which
    RFC 8785 §3.2.2.3 adopts): the shortest digits that read back as the same double
    (Python's repr finds the same ones), laid out by the decimal exponent."""
    if value != value or value in (math.inf, -math.inf):
        raise ValueError(f"not representable as canonical JSON: {value}")
    if value == 0:
        return "0"  # -0 too
    if value < 0:
        return "-" + _number(-value)
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.<digits> × 10^n
    n = len(whole) + (int(exponent) if exponent else 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return f"0.{'0' * -n}{digits}"
    sign = "+" if n - 1 >= 0 else "-"
    head = digits[0] if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{head}e{sign}{abs(n - 1)}"


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(jcs(value)).hexdigest()


def arguments_hash(arguments: dict[str, Any]) -> str:
    """Binds approvals and replays to the exact arguments (hex SHA-256 of their JCS)."""
    return sha256_hex(arguments)


# The deepest nesting of objects and lists the gateway accepts in what callers send
# (tool arguments, plan inputs and step arguments). Its readers (this module's
# canonicalizer, JSON Schema, redaction, the policy engine) recurse per level, and a
# few hundred levels, well inside the body limit, exhaust Python's recursion limit. No
# tool call needs this many.
MAX_NESTING = 64


class NotIJson(ValueError):
    """A document holds a value the gateway does not accept (see `check_document`).
    ``pointer`` is the RFC 6901 JSON pointer to it within the document checked."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"{pointer or '/'}: {reason}")
        self.pointer = pointer
        self.reason = reason


def check_document(value: Any, *, max_depth: int = MAX_NESTING) -> None:
    """The one rule for every document that enters the gateway (tool arguments, plans,
    run inputs, upstream results): I-JSON (RFC 7493), so that RFC 8785 represents it
    without changing it, and so that every reader of the audit log reads back what was
    written. Raises `NotIJson` at the first value outside it:

    - a number that is not an IEEE-754 double exactly: NaN, ±Infinity (``1e400``
      parses to one), an integer no double equals (``9007199254740993``); integers that
      are exact doubles (``100000000000000000``, i.e. ``1e17``) are accepted;
    - a string or key that is not Unicode text (a lone surrogate such as ``"\\ud800"``);
    - objects and lists nested more than ``max_depth`` levels (the top one is level 1);
    - anything that is not JSON (a non-string key, a Python object).

    Iterative and cheap on the common case: it runs on every call's arguments.
    """
    if not _acceptable(value, max_depth):
        # Rare: walk again, now keeping the path, to name the first bad value.
        problem = _first_problem(value, "", 1, max_depth)
        raise problem if problem is not None else NotIJson("", "not a JSON document")


def withhold_unacceptable(value: Any, *, max_depth: int = MAX_NESTING) -> Any:
    """A copy of ``value`` in which every part `check_document` refuses is replaced by a
    marker saying why: what the audit log records of a refused document, so the attempt
    is on record without the value that could not be written down."""
    return _withheld_copy(value, 1, max_depth)


def _acceptable(value: Any, max_depth: int) -> bool:
    if type(value) is dict:
        stack: list[tuple[Any, int]] = [(value, 1)]
    elif type(value) is list:
        stack = [(value, 1)]
    else:
        return _scalar_ok(value)
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return False
        if type(node) is dict:
            for key, item in node.items():
                if type(key) is not str or not (key.isascii() or _is_text(key)):
                    return False
                kind = type(item)
                if kind is dict or kind is list:
                    stack.append((item, depth + 1))
                elif not _scalar_ok(item):
                    return False
        else:
            for item in node:
                kind = type(item)
                if kind is dict or kind is list:
                    stack.append((item, depth + 1))
                elif not _scalar_ok(item):
                    return False
    return True


def _scalar_ok(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return value.isascii() or _is_text(value)
    if kind is int:
        return -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER or _is_exact_double(value)
    if kind is float:
        return math.isfinite(value)
    return value is None or kind is bool


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _is_exact_double(number: int) -> bool:
    try:
        return float(number) == number
    except OverflowError:
        return False


def _scalar_problem(value: Any) -> str | None:
    if _scalar_ok(value):
        return None
    kind = type(value)
    if kind is str:
        return "a string holding a lone surrogate is not Unicode text"
    if kind is int:
        return (
            f"the integer {value if abs(value) < 10**30 else 'given'} is not exactly "
            "representable as an IEEE-754 double (I-JSON, RFC 7493)"
        )
    if kind is float:
        return f"{value} is not a JSON number (I-JSON allows finite doubles only)"
    return f"a {kind.__name__} is not a JSON value"


def _first_problem(value: Any, pointer: str, depth: int, max_depth: int) -> NotIJson | None:
    if type(value) is dict or type(value) is list:
        if depth > max_depth:
            return NotIJson(pointer, f"nested more than {max_depth} levels deep")
        items = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            if type(value) is dict and (type(key) is not str or not _is_text(key)):
                return NotIJson(pointer, "an object key is not Unicode text")
            found = _first_problem(item, f"{pointer}/{_escape(key)}", depth + 1, max_depth)
            if found is not None:
                return found
        return None
    reason = _scalar_problem(value)
    return None if reason is None else NotIJson(pointer, reason)


def _withheld_copy(value: Any, depth: int, max_depth: int) -> Any:
    if type(value) is dict or type(value) is list:
        if depth > max_depth:
            return f"[withheld: nested more than {max_depth} levels deep]"
        if type(value) is list:
            return [_withheld_copy(item, depth + 1, max_depth) for item in value]
        if not all(type(key) is str and _is_text(key) for key in value):
            return "[withheld: an object key is not Unicode text]"
        return {key: _withheld_copy(item, depth + 1, max_depth) for key, item in value.items()}
    reason = _scalar_problem(value)
    return value if reason is None else f"[withheld: {reason}]"


def _escape(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def parse_json(text: str | bytes) -> Any:
    """Reads JSON the gateway wrote (audit payloads, records): numbers as the doubles
    they are. RFC 8785 writes the double 1e17 as ``100000000000000000``, which Python
    would read back as an integer beyond 2^53 that no longer canonicalizes; here it is
    read as the float it was. Raises ValueError for what is not JSON (NaN included)."""
    return json.loads(text, parse_int=_int_or_double, parse_constant=_no_constant)


def _int_or_double(text: str) -> int | float:
    number = int(text)
    return number if -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER else float(number)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
