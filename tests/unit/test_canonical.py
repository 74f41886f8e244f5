"""Canonical JSON (RFC 8785) and the argument hash that binds approvals."""

from __future__ import annotations

import hashlib
import random

import pytest
import rfc8785

from gateway.canonical import arguments_hash, jcs, nests_deeper_than


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
    [{"é": 1, "z": 2, "a": 3}, {"\ue000": 1, "😀": 2}, {"n": 1.0}, {"big": 2**60}, [1e21]],
    ids=["non-ascii-keys", "utf16-order", "float", "big-int", "exponent"],
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
    assert not nests_deeper_than({}, 1)
    assert not nests_deeper_than({"a": [1, {"b": "x"}]}, 3)
    assert nests_deeper_than({"a": [1, {"b": "x"}]}, 2)
    assert not nests_deeper_than("scalar", 0)
    deep: object = "x"
    for _ in range(100_000):  # far beyond what a recursive walk survives
        deep = [deep]
    assert nests_deeper_than({"a": deep}, 64)
