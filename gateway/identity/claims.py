"""The mapping between verified JWT claims and a `Principal`, in both directions.

Only called on claims whose signature has been verified. Every malformed claim is an
`AuthenticationError`: a token whose roles or delegation chain cannot be read must not
turn into a principal with fewer roles or a shorter chain than its issuer meant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import AuthenticationError
from gateway.types import Actor, Principal

# RFC 8693 puts no limit on nesting; we do, so a hostile issuer (or a bug) cannot make
# every policy evaluation walk an absurd chain. Sixteen hops is far beyond real use.
MAX_ACT_DEPTH = 16

# Claims that have their own Principal field or are protocol plumbing; the rest of the
# payload is handed to policy as ``claims``.
REGISTERED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "act", "scope", "scp"}
)
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")


def _fail(message: str, reason: str) -> AuthenticationError:
    return AuthenticationError(message, details={"reason": reason})


def check_numeric_dates(payload: Mapping[str, Any]) -> None:
    """exp/nbf/iat must be JSON numbers: pyjwt would also accept "123" or true."""
    for name in NUMERIC_DATE_CLAIMS:
        if name not in payload:
            continue
        value = payload[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _fail(
                f"claim {name!r} must be a number (seconds since the epoch)", "invalid_claim"
            )


def parse_string_list(value: Any, claim: str) -> tuple[str, ...]:
    """A JSON array of strings or one space-separated string (both forms are common)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _fail(
        f"claim {claim!r} must be a list of strings or a space-separated string", "invalid_claim"
    )


def parse_scopes(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """``scope`` (RFC 8693/9068, space-separated) wins; ``scp`` (a list, e.g. Okta) otherwise."""
    if "scope" in payload:
        return parse_string_list(payload["scope"], "scope")
    return parse_string_list(payload.get("scp"), "scp")


def parse_act_chain(act: Any) -> tuple[Actor, ...]:
    """Flattens nested ``act`` claims: the outermost (current actor) first.

    Iterative, with a depth bound, so a deeply nested claim costs nothing to refuse.
    """
    chain: list[Actor] = []
    current = act
    while current is not None:
        if len(chain) == MAX_ACT_DEPTH:
            raise _fail(
                f"delegation chain (nested 'act' claims) is deeper than {MAX_ACT_DEPTH} actors",
                "act_chain_too_deep",
            )
        if not isinstance(current, dict):
            raise _fail(f"'act' claim at depth {len(chain) + 1} must be an object", "invalid_act")
        sub = current.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _fail(
                f"'act' claim at depth {len(chain) + 1} needs a non-empty string 'sub'",
                "invalid_act",
            )
        iss = current.get("iss")
        if iss is not None and not isinstance(iss, str):
            raise _fail(
                f"'act' claim at depth {len(chain) + 1}: 'iss' must be a string", "invalid_act"
            )
        chain.append(Actor(sub=sub, iss=iss))
        current = current.get("act")
    return tuple(chain)


def nest_act_chain(chain: Sequence[Actor]) -> dict[str, Any] | None:
    """The inverse of `parse_act_chain`: ``chain[0]`` becomes the outermost ``act``."""
    nested: dict[str, Any] | None = None
    for actor in reversed(chain):
        entry = actor.to_dict()
        if nested is not None:
            entry["act"] = nested
        nested = entry
    return nested


def principal_from_claims(
    payload: Mapping[str, Any], *, roles_claim: str, tenant_claim: str
) -> Principal:
    """Builds the Principal from verified claims (``iss``, ``sub`` already required)."""
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _fail("claim 'sub' must be a non-empty string", "invalid_claim")
    tenant = payload.get(tenant_claim)
    if tenant is not None and not isinstance(tenant, str):
        raise _fail(f"claim {tenant_claim!r} (tenant) must be a string", "invalid_claim")
    jti = payload.get("jti")
    if jti is not None and not isinstance(jti, str):
        raise _fail("claim 'jti' must be a string", "invalid_claim")
    consumed = REGISTERED_CLAIMS | {roles_claim, tenant_claim}
    return Principal(
        sub=sub,
        iss=payload["iss"],
        roles=parse_string_list(payload.get(roles_claim), roles_claim),
        scopes=parse_scopes(payload),
        tenant=tenant,
        act_chain=parse_act_chain(payload.get("act")),
        claims={k: v for k, v in payload.items() if k not in consumed},
        token_id=jti,
    )
