"""Whose upstream session a sessionless request gets (`mcp_principals`,
docs/decisions/0043): the same for the same subject, actors, endpoint and declared
capabilities, another as soon as one differs, and never the same for two callers
however their names are spelled."""

from __future__ import annotations

import mcp_types as types

from gateway.surfaces.mcp_principals import PrincipalCallers
from gateway.types import Actor, Principal

ALICE = Principal(sub="agent:alice", iss="https://issuer.example", roles=("agent",))
ROOTS = types.ClientCapabilities(roots=types.RootsCapability(list_changed=True))
SAMPLING = types.ClientCapabilities(sampling=types.SamplingCapability())


def _key(principal: Principal, endpoint: str = "/mcp", capabilities=ROOTS) -> str:
    caller = PrincipalCallers(None).caller(  # type: ignore[arg-type]  # never asked here
        principal, endpoint, capabilities, method="tools/call", target="up__t", request_id="r"
    )
    assert caller.for_principal and caller.outside is not None
    return caller.id


def test_the_same_caller_gets_the_same_upstream_session() -> None:
    other_token = Principal(sub="agent:alice", iss="https://issuer.example", roles=("admin",))
    assert _key(ALICE) == _key(other_token)  # roles and scopes are not who it is
    listed = types.ClientCapabilities(roots=types.RootsCapability(list_changed=False))
    assert _key(ALICE) == _key(ALICE, capabilities=listed)  # what is declared, not how


def test_each_difference_is_another_upstream_session() -> None:
    keys = {
        _key(ALICE),
        _key(Principal(sub="agent:bob", iss="https://issuer.example")),
        _key(Principal(sub="agent:alice", iss="https://other.example")),
        _key(Principal(sub="agent:alice", iss="https://issuer.example", act_chain=(Actor("x"),))),
        _key(ALICE, "/mcp/up"),
        _key(ALICE, capabilities=SAMPLING),
        _key(ALICE, capabilities=None),
    }
    assert len(keys) == 7


def test_no_spelling_of_a_subject_reaches_another_callers_key() -> None:
    """A subject holding what separates the parts of a key (a newline, a quote, the
    repr of an actor) stays one field."""
    acting = Principal(sub="a", iss="i", act_chain=(Actor("b"),))
    forged = [
        Principal(sub="a', (Actor(sub='b', iss=None),), '/mcp', ('roots',)), ('", iss="i"),
        Principal(sub="a\ni\nb", iss="i"),
        Principal(sub="a", iss="i", act_chain=(Actor("b", "i"),)),
    ]
    assert all(_key(f) != _key(acting) for f in forged)
    assert _key(Principal(sub="a", iss="i"), "/mcp/x") != _key(Principal(sub="a", iss="i/mcp"))


def test_the_handshake_declares_what_the_request_declared() -> None:
    both = types.ClientCapabilities(
        roots=types.RootsCapability(), sampling=types.SamplingCapability()
    )
    caller = PrincipalCallers(None).caller(  # type: ignore[arg-type]
        ALICE,
        "/mcp",
        both,
        method="tools/call",
        target="up__t",
        request_id="r",
    )
    assert set(caller.capabilities) == {"roots", "sampling"}
