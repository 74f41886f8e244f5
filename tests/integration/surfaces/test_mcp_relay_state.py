"""The sealed requestState of relayed requests for client input: forged, tampered,
expired, replayed and someone else's states are refused, each with its reason, on
SQLite and PostgreSQL (docs/decisions/0019)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine

from gateway.errors import RelayStateRefused
from gateway.store import create_engine, migrate
from gateway.surfaces.mcp_relay_state import PREFIX, StateClaims, StateSeal, UsedStates
from gateway.types import Identity

ALICE = Identity.of("agent:alice", "https://issuer.example")
BOB = Identity.of("agent:bob", "https://issuer.example")
REQUEST = {
    "endpoint": "/mcp",
    "method": "tools/call",
    "target": "demo__ask_confirmation",
    "arguments_sha256": "a" * 64,
}


class Wall:
    """The wall clock the seal reads, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def seal(wall: Wall) -> StateSeal:
    return StateSeal.from_signing_key(ed25519.Ed25519PrivateKey.generate(), ttl_s=60, wall=wall)


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _claims(seal: StateSeal, identity: Identity = ALICE) -> StateClaims:
    return seal.new_claims(
        identity=identity, upstream="demo", continuation="c1", keys=("0",), **REQUEST
    )


def _refusal(seal: StateSeal, token: str, identity: Identity = ALICE, **changed: str) -> str:
    with pytest.raises(RelayStateRefused) as refused:
        seal.open(token, identity=identity, **{**REQUEST, **changed})
    assert refused.value.jsonrpc_code == -32602
    return refused.value.reason


def test_a_sealed_state_opens_for_its_request_and_reveals_nothing(seal: StateSeal) -> None:
    claims = _claims(seal)
    token = seal.seal(claims)
    assert token.startswith(PREFIX)
    assert "alice" not in token and "demo" not in token  # encrypted, not only signed
    assert seal.open(token, identity=ALICE, **REQUEST) == claims


def test_a_forged_state_is_refused(seal: StateSeal) -> None:
    forged = base64.urlsafe_b64encode(json.dumps(_claims(seal).to_wire()).encode()).decode()
    assert _refusal(seal, PREFIX + forged) == "tampered"
    assert _refusal(seal, "eyJzdGF0ZSI6MX0") == "malformed"  # not ours at all
    assert _refusal(seal, PREFIX + "!!!") == "malformed"
    assert _refusal(seal, PREFIX + "x" * 9000) == "malformed"
    other = StateSeal.from_signing_key(ed25519.Ed25519PrivateKey.generate(), ttl_s=60)
    assert _refusal(seal, other.seal(_claims(other))) == "tampered"  # another gateway's


def test_every_flipped_bit_is_refused(seal: StateSeal) -> None:
    token = seal.seal(_claims(seal))
    raw = bytearray(base64.urlsafe_b64decode(token[len(PREFIX) :] + "=="))
    for index in range(0, len(raw), 7):
        altered = bytearray(raw)
        altered[index] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        assert _refusal(seal, PREFIX + text) in ("tampered", "malformed")


def test_an_expired_state_is_refused(seal: StateSeal, wall: Wall) -> None:
    token = seal.seal(_claims(seal))
    wall.now += 59.9
    seal.open(token, identity=ALICE, **REQUEST)
    wall.now += 0.2
    assert _refusal(seal, token) == "expired"


def test_another_principal_or_request_is_refused(seal: StateSeal) -> None:
    token = seal.seal(_claims(seal))
    assert _refusal(seal, token, identity=BOB) == "other_principal"
    other_issuer = Identity.of("agent:alice", "https://other.example")
    assert _refusal(seal, token, identity=other_issuer) == "other_principal"
    assert _refusal(seal, token, target="demo__echo") == "other_request"
    assert _refusal(seal, token, method="prompts/get") == "other_request"
    assert _refusal(seal, token, endpoint="/mcp/demo") == "other_request"
    assert _refusal(seal, token, arguments_sha256="b" * 64) == "other_request"


def test_a_state_is_used_once(seal: StateSeal, migrated: Engine, wall: Wall) -> None:
    used = UsedStates(migrated, wall=wall)
    claims = _claims(seal)
    used.use(claims)
    with pytest.raises(RelayStateRefused) as replayed:
        used.use(claims)
    assert replayed.value.reason == "replayed"
    # Another process on the same database refuses it too.
    with pytest.raises(RelayStateRefused):
        UsedStates(migrated, wall=wall).use(claims)
    used.use(_claims(seal))  # a new state is a new id


def test_expired_ids_are_swept_without_forgetting_live_ones(
    seal: StateSeal, migrated: Engine, wall: Wall
) -> None:
    used = UsedStates(migrated, wall=wall)
    old, live = _claims(seal), None
    used.use(old)
    wall.now += 30
    live = _claims(seal)
    used.use(live)
    wall.now += 45  # old expired (60 s), live not yet
    used.use(_claims(seal))
    with pytest.raises(RelayStateRefused):
        used.use(live)
