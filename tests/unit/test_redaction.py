"""Redaction obligations: JSON pointers into the policy input, values replaced by a marker."""

from __future__ import annotations

import copy
from typing import Any

from gateway.redaction import REDACTED, redact

DOCUMENT: dict[str, Any] = {
    "arguments": {
        "api_key": "k-123",
        "text": "hello",
        "auth": {"token": "t-1", "user": "alice"},
        "a/b": "slash",
        "m~n": "tilde",
        "~1": "literal tilde-one",
        "items": [{"secret": "s0", "id": 0}, {"secret": "s1", "id": 1}],
    },
    "context": {"request_id": "req_1"},
}


def test_top_level_argument_is_replaced_by_the_marker() -> None:
    result = redact(DOCUMENT, ["/arguments/api_key"])
    assert result["arguments"]["api_key"] == REDACTED
    assert result["arguments"]["text"] == "hello"
    assert result["context"] == DOCUMENT["context"]


def test_nested_value_is_redacted_and_siblings_kept() -> None:
    result = redact(DOCUMENT, ["/arguments/auth/token"])
    assert result["arguments"]["auth"] == {"token": REDACTED, "user": "alice"}


def test_whole_subtree_is_redacted() -> None:
    result = redact(DOCUMENT, ["/arguments/auth"])
    assert result["arguments"]["auth"] == REDACTED


def test_escapes_follow_rfc_6901() -> None:
    result = redact(DOCUMENT, ["/arguments/a~1b", "/arguments/m~0n"])
    assert result["arguments"]["a/b"] == REDACTED
    assert result["arguments"]["m~n"] == REDACTED
    assert result["arguments"]["text"] == "hello"


def test_tilde_zero_one_is_a_literal_tilde_one_not_a_slash() -> None:
    # "~01" decodes to "~1" (unescape ~1 before ~0), never to "/".
    result = redact(DOCUMENT, ["/arguments/~01"])
    assert result["arguments"]["~1"] == REDACTED
    assert result["arguments"]["a/b"] == "slash"


def test_list_index() -> None:
    result = redact(DOCUMENT, ["/arguments/items/1/secret"])
    assert [i["secret"] for i in result["arguments"]["items"]] == ["s0", REDACTED]


def test_wildcard_over_list_items() -> None:
    result = redact(DOCUMENT, ["/arguments/items/*/secret"])
    assert result["arguments"]["items"] == [
        {"secret": REDACTED, "id": 0},
        {"secret": REDACTED, "id": 1},
    ]


def test_wildcard_over_dict_keys() -> None:
    result = redact({"arguments": {"a": 1, "b": {"c": 2}}}, ["/arguments/*"])
    assert result == {"arguments": {"a": REDACTED, "b": REDACTED}}


def test_wildcard_then_key_skips_values_without_it() -> None:
    document = {"arguments": {"a": {"secret": 1}, "b": {"other": 2}, "c": "scalar"}}
    result = redact(document, ["/arguments/*/secret"])
    assert result == {"arguments": {"a": {"secret": REDACTED}, "b": {"other": 2}, "c": "scalar"}}


def test_missing_paths_are_ignored() -> None:
    pointers = [
        "/arguments/nope",
        "/arguments/auth/token/deeper",
        "/arguments/items/7/secret",
        "/arguments/items/-1",
        "/arguments/items/x",
        "/nothing/at/all",
    ]
    result = redact(DOCUMENT, pointers)
    assert result == DOCUMENT


def test_original_document_is_not_mutated() -> None:
    before = copy.deepcopy(DOCUMENT)
    result = redact(DOCUMENT, ["/arguments/api_key", "/arguments/items/*/secret"])
    assert DOCUMENT == before
    assert result is not DOCUMENT
    assert result["arguments"]["items"] is not DOCUMENT["arguments"]["items"]


def test_no_pointers_returns_the_document_unchanged() -> None:
    assert redact(DOCUMENT, []) == DOCUMENT
    assert redact(DOCUMENT, ()) == DOCUMENT


def test_root_pointer_redacts_nothing() -> None:
    # "" is the whole document: replacing it would leave no record at all.
    assert redact(DOCUMENT, [""]) == DOCUMENT


def test_several_pointers_apply_together() -> None:
    result = redact(DOCUMENT, ["/arguments/api_key", "/arguments/auth/token"])
    assert result["arguments"]["api_key"] == REDACTED
    assert result["arguments"]["auth"]["token"] == REDACTED
