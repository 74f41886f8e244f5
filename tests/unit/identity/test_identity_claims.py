"""Claims ↔ Principal: delegation chains, roles and scopes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import AuthenticationError
from gateway.identity import MAX_ACT_DEPTH, nest_act_chain, parse_act_chain
from gateway.identity.claims import parse_scopes, parse_string_list, principal_from_claims
from gateway.types import Actor


def test_act_chain_outermost_first() -> None:
    act = {
        "sub": "agent:b",
        "iss": "https://idp",
        "act": {"sub": "agent:a", "act": {"sub": "user:x"}},
    }
    assert parse_act_chain(act) == (
        Actor("agent:b", "https://idp"),
        Actor("agent:a"),
        Actor("user:x"),
    )
    assert parse_act_chain(None) == ()


def test_nest_is_the_inverse_of_parse() -> None:
    chain = (Actor("gw"), Actor("agent:a", "https://idp"), Actor("user:x"))
    nested = nest_act_chain(chain)
    assert nested == {
        "sub": "gw",
        "act": {"sub": "agent:a", "iss": "https://idp", "act": {"sub": "user:x"}},
    }
    assert parse_act_chain(nested) == chain
    assert nest_act_chain(()) is None


@pytest.mark.parametrize(
    "act",
    [
        "agent:a",
        {"iss": "x"},
        {"sub": ""},
        {"sub": 5},
        {"sub": "a", "iss": 5},
        {"sub": "a", "act": ["b"]},
    ],
)
def test_malformed_act(act: Any) -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_act_chain(act)
    assert caught.value.details["reason"] == "invalid_act"


def test_act_depth_limit_is_checked_before_walking_further() -> None:
    act: dict[str, Any] = {"sub": "leaf"}
    for i in range(10_000):  # far deeper than any recursion limit
        act = {"sub": f"a{i}", "act": act}
    with pytest.raises(AuthenticationError, match=f"deeper than {MAX_ACT_DEPTH}"):
        parse_act_chain(act)


def test_string_lists() -> None:
    assert parse_string_list("a  b\tc", "roles") == ("a", "b", "c")
    assert parse_string_list(["a", "b"], "roles") == ("a", "b")
    assert parse_string_list(None, "roles") == ()
    for bad in (5, ["a", 1], {"a": 1}):
        with pytest.raises(AuthenticationError, match="'roles' must be a list of strings"):
            parse_string_list(bad, "roles")


def test_scope_wins_over_scp() -> None:
    assert parse_scopes({"scope": "a b", "scp": ["c"]}) == ("a", "b")
    assert parse_scopes({"scp": ["c", "d"]}) == ("c", "d")
    assert parse_scopes({"scp": "c d"}) == ("c", "d")
    assert parse_scopes({}) == ()


def test_principal_claims_are_the_unregistered_rest() -> None:
    payload = {
        "iss": "i", "sub": "s", "aud": "a", "exp": 1, "iat": 0, "nbf": 0, "jti": "j",
        "scope": "x", "roles": ["r"], "tenant": "t", "act": {"sub": "g"}, "email": "e@x",
    }  # fmt: skip
    p = principal_from_claims(payload, roles_claim="roles", tenant_claim="tenant")
    assert p.claims == {"email": "e@x"}
    assert (p.roles, p.tenant, p.token_id, p.act_chain) == (("r",), "t", "j", (Actor("g"),))


@pytest.mark.parametrize(
    "payload", [{"sub": ""}, {"sub": 5}, {"sub": "s", "tenant": 5}, {"sub": "s", "jti": 5}]
)
def test_principal_claim_types(payload: dict[str, Any]) -> None:
    with pytest.raises(AuthenticationError):
        principal_from_claims({"iss": "i", **payload}, roles_claim="roles", tenant_claim="tenant")
