"""Canonical JSON (RFC 8785) and the argument hash that binds approvals."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gateway.canonical import (
    NotIJson,
    arguments_hash,
    check_document,
    jcs,
    parse_json,
    withhold_unacceptable,
)
from tests.support.documents import documents


def test_hash_is_sha256_of_the_canonical_form() -> None:
    assert arguments_hash({"b": 1, "a": "x"}) == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()


def test_key_order_does_not_matter() -> None:
    one = {"table": "orders", "ids": [1, 2], "opts": {"z": True, "a": None}}
    two = {"opts": {"a": None, "z": True}, "ids": [1, 2], "table": "orders"}
    assert arguments_hash(one) == arguments_hash(two)


def test_list_order_matters() -> None:
    assert arguments_hash({"ids": [1, 2]}) != arguments_hash({"ids": [2, 1]})


@pytest.mark.parametrize(
    ("left", "right"),
    [(1.0, 1), (1e2, 100), (-0.0, 0), (0.5, 5e-1)],
)
def test_numbers_are_canonicalized(left: float, right: float) -> None:
    assert arguments_hash({"n": left}) == arguments_hash({"n": right})


def test_number_serialization_follows_rfc_8785() -> None:
    assert jcs({"n": 1.0}) == b'{"n":1}'
    assert jcs({"n": 1e21}) == b'{"n":1e+21}'
    assert jcs({"n": 0.000001}) == b'{"n":0.000001}'
    assert jcs({"n": 1e-7}) == b'{"n":1e-7}'


def test_different_values_differ() -> None:
    assert arguments_hash({"n": 1}) != arguments_hash({"n": "1"})
    assert arguments_hash({"n": 1}) != arguments_hash({"n": 1.5})
    assert arguments_hash({}) != arguments_hash({"n": None})


def test_strings_are_utf8_not_escaped() -> None:
    assert jcs({"s": 'é\n"'}) == '{"s":"é\\n\\""}'.encode()


def test_keys_sort_by_utf16_code_units() -> None:
    # By code point U+E000 < U+1F600, but in UTF-16 the emoji is the surrogate pair
    # D83D DE00, and 0xD83D < 0xE000: RFC 8785 sorts by UTF-16 code units.
    assert jcs({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'.encode()


# --- the fast path must be byte-identical to the reference implementation -------------

_ALPHABET = 'aZ09 _-"\\/\n\t\r\b\f\x00\x1f\x7f\u2028é€😀\ud7ff\ue000'


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 7, 2**53 - 1, -(2**53 - 1), rng.randrange(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.5, -1.25, 1e21, 1e-7, 3.0, 100.0, rng.random()])
    if kind in (4, 5):
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(8)))
    if kind in (6, 7):
        return {
            "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(1, 5))): _random_value(
                rng, depth + 1
            )
            for _ in range(rng.randrange(5))
        }
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_jcs_matches_the_reference_implementation_on_random_documents() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        value = _random_value(rng)
        assert jcs(value) == rfc8785.dumps(value), value


@pytest.mark.parametrize(
    "value",
    [{"é": 1, "z": 2, "a": 3}, {"\ue000": 1, "😀": 2}, {"n": 1.0}, {"big": 2**60 + 1}, [1e21]],
    ids=["non-ascii-keys", "utf16-order", "float", "big-int-not-a-double", "exponent"],
)
def test_jcs_falls_back_where_python_and_jcs_differ(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            jcs(value)
        return
    assert jcs(value) == expected


def test_jcs_rejects_what_json_cannot_represent() -> None:
    for bad in ({"x": float("nan")}, {"s": "\ud800"}, {1: "int key"}, {"o": object()}):
        with pytest.raises(ValueError):
            jcs(bad)


def test_nesting_depth_is_measured_without_recursion() -> None:
    check_document({}, max_depth=1)
    check_document({"a": [1, {"b": "x"}]}, max_depth=3)
    with pytest.raises(NotIJson) as raised:
        check_document({"a": [1, {"b": "x"}]}, max_depth=2)
    assert raised.value.pointer == "/a/1"
    check_document("scalar", max_depth=0)
    deep: object = "x"
    for _ in range(100_000):  # far beyond what a recursive walk survives
        deep = [deep]
    with pytest.raises(NotIJson, match="nested more than 64 levels"):
        check_document({"a": deep})


# --- the one rule for documents: I-JSON (RFC 7493) --------------------------------


@pytest.mark.parametrize(
    ("document", "pointer", "reason"),
    [
        ({"n": 9007199254740993}, "/n", "not exactly representable"),
        ({"n": -(2**64) - 1}, "/n", "not exactly representable"),
        ({"n": 10**400}, "/n", "not exactly representable"),
        ({"n": float("inf")}, "/n", "finite doubles only"),
        ({"a": [0, float("nan")]}, "/a/1", "finite doubles only"),
        ({"s": "\ud800"}, "/s", "lone surrogate"),
        ({"x": {"\udfff": 1}}, "/x", "key is not Unicode text"),
        ({"a/b": {"~": float("-inf")}}, "/a~1b/~0", "finite doubles only"),
        ({"o": object()}, "/o", "not a JSON value"),
        ({"t": (1, 2)}, "/t", "not a JSON value"),
        ({1: "int key"}, "", "key is not Unicode text"),
    ],
)
def test_documents_outside_i_json_are_refused_naming_where(
    document: object, pointer: str, reason: str
) -> None:
    with pytest.raises(NotIJson) as raised:
        check_document(document)
    assert raised.value.pointer == pointer
    assert reason in raised.value.reason


@pytest.mark.parametrize(
    "value",
    [10**17, 2**53, -(2**60), 2**1023, 1e17, 1.5, "é😀", "", None, True, [], {}],
)
def test_exact_doubles_and_unicode_are_accepted(value: object) -> None:
    check_document({"v": value})
    # ... and canonicalize as the double they equal, whichever way they came.
    if isinstance(value, int) and not isinstance(value, bool):
        assert jcs({"v": value}) == jcs({"v": float(value)})


def test_an_integer_sent_for_1e17_canonicalizes_as_rfc_8785_writes_the_double() -> None:
    assert jcs({"n": 100000000000000000}) == b'{"n":100000000000000000}'
    assert jcs({"n": 1e17}) == b'{"n":100000000000000000}'


def test_logged_numbers_read_back_as_the_doubles_they_are() -> None:
    # The bytes RFC 8785 writes for 1e17 read back as a value that canonicalizes to
    # the same bytes: a reader of the log never meets an integer beyond 2^53.
    written = jcs({"n": 1e17, "small": 7, "big": 1e21})
    read = parse_json(written)
    assert read == {"n": 1e17, "small": 7, "big": 1e21}
    assert type(read["small"]) is int
    assert jcs(read) == written


@pytest.mark.parametrize("text", [b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}'])
def test_reading_the_log_refuses_what_is_not_json(text: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


def test_withholding_replaces_each_refused_value_and_keeps_the_rest() -> None:
    document = {"ok": "x", "n": 9007199254740993, "list": [1, float("nan")], "s": "\ud800"}
    shown = withhold_unacceptable(document)
    assert shown["ok"] == "x"
    assert shown["list"][0] == 1
    for value in (shown["n"], shown["list"][1], shown["s"]):
        assert isinstance(value, str) and value.startswith("[withheld: ")
    check_document(shown)
    jcs(shown)  # what is recorded always canonicalizes


def test_withholding_cuts_nesting_at_the_limit() -> None:
    deep: object = "x"
    for _ in range(200):
        deep = {"d": deep}
    shown = withhold_unacceptable({"a": deep})
    check_document(shown)
    assert "nested more than 64 levels" in json.dumps(shown)


# --- properties over arbitrary JSON-ish documents (hypothesis) ----------------------


@given(documents())
def test_every_document_is_refused_or_round_trips_through_the_log(document: object) -> None:
    # What check_document accepts canonicalizes, and reads back (as the log's readers
    # read it) as a document with the very same canonical bytes.
    try:
        check_document(document)
    except NotIJson as refused:
        # Refused documents name where, and what is recorded of them canonicalizes.
        assert refused.pointer == "" or refused.pointer.startswith("/")
        jcs(withhold_unacceptable(document))
        return
    written = jcs(document)
    assert jcs(parse_json(written)) == written
    assert written == rfc8785.dumps(parse_json(written))


# --- the fast JCS equals the reference implementation (hypothesis) -----------------

# Unicode text without lone surrogates (what `check_document` lets through), with the
# characters JSON escapes (quote, backslash, controls) drawn often.
_unicode = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029'),
    ),
    max_size=10,
)
_ascii_keys = st.text(st.characters(max_codepoint=0x7F), max_size=6)
_safe_ints = st.integers(-(2**53) + 1, 2**53 - 1)
# The common case the fast path takes: ASCII keys, strings, booleans, null, integers
# within 2^53, nested.
_plain_documents = st.recursive(
    st.one_of(st.none(), st.booleans(), _safe_ints, _unicode),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_ascii_keys, children, max_size=5)
    ),
    max_leaves=30,
)
# Everything else JCS defines, which the fast path must hand to the reference: doubles,
# non-ASCII keys (ordered by UTF-16 units), mixed with plain values.
_any_documents = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        _safe_ints,
        st.floats(allow_nan=False, allow_infinity=False),
        _unicode,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_ascii_keys, _unicode), children, max_size=5),
    ),
    max_leaves=30,
)


@given(_plain_documents)
def test_jcs_of_common_documents_equals_rfc8785(document: object) -> None:
    assert jcs(document) == rfc8785.dumps(document)


@given(_any_documents)
def test_jcs_of_any_i_json_document_equals_rfc8785(document: object) -> None:
    assert jcs(document) == rfc8785.dumps(document)


@given(st.lists(_plain_documents, min_size=1, max_size=3), st.integers(0, 2))
def test_a_value_beyond_the_fast_path_anywhere_sends_the_document_to_the_reference(
    parts: list[object], where: int
) -> None:
    # One float, big integer or non-ASCII key hidden at any position of a plain document.
    for odd in (0.5, 2**53, {"é": 1, "z": 2}):
        document = [*parts]
        document.insert(min(where, len(document)), {"odd": [odd]})
        expected = rfc8785.dumps(_doubles(document))
        assert jcs(document) == expected


def _doubles(value: object) -> object:
    """``value`` with integers beyond 2^53 that a double equals as that double, as RFC
    8785 reads them (`rfc8785` itself refuses such integers)."""
    if type(value) is int and abs(value) > 2**53 - 1 and float(value) == value:
        return float(value)
    if isinstance(value, dict):
        return {key: _doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_doubles(item) for item in value]
    return value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_double_is_written_as_rfc8785_writes_it(number: float) -> None:
    assert jcs(number) == rfc8785.dumps(number)
    assert jcs({"n": [number, -number]}) == rfc8785.dumps({"n": [number, -number]})


@given(st.integers(-(2**70), 2**70).filter(lambda n: float(n) == n))
def test_integers_that_doubles_equal_are_written_as_those_doubles(number: int) -> None:
    assert jcs([number]) == rfc8785.dumps(_doubles([number]))


@pytest.mark.parametrize(
    "number",
    [5e-324, 1e-7, 1e-6, 0.000001234, 1e21, 1e20, 123456789012345680000.0, 1.5, 100.0, 2**53 + 2.0],
)
def test_numbers_at_the_edges_of_each_layout(number: float) -> None:
    assert jcs(number) == rfc8785.dumps(number)


def test_documents_sharing_or_referring_to_themselves_end() -> None:
    shared = {"a": [1, "x"]}
    many = {"items": [shared] * 30_000}  # beyond the fast walk's container count
    assert jcs(many) == rfc8785.dumps(many)
    cyclic: dict[str, object] = {}
    cyclic["self"] = [cyclic]
    with pytest.raises(ValueError):
        jcs(cyclic)
    with_float: dict[str, object] = {"items": [shared] * 30_000, "n": 0.5}
    assert jcs(with_float) == rfc8785.dumps(with_float)
