"""Witness cosignatures (C2SP tlog-cosignature, Ed25519 cosignature/v1): byte-for-byte
agreement with the Go reference (github.com/transparency-dev/formats/note), and
rejections of forged, replayed and misattributed cosignatures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.audit.keys import SigningKey
from gateway.tlog.cosignature import (
    WitnessKey,
    cosign,
    cosignature_key_id,
    signed_message,
    verify_cosignatures,
)
from gateway.tlog.errors import NoteFormatError, NoteSignatureError
from gateway.tlog.keys import VerifierKey
from gateway.tlog.note import NoteSignature, parse_note, sign_note

TEXT = "example.com/audit-log\n7\nMfyM1jxwSMNcIYNHLdEIjtbcQXcBZrBxR9v2j3GlGEE=\n"

# Made with github.com/transparency-dev/formats v0.1.1 (note.NewSignerForCosignatureV1 on
# a type-0x04 key whose seed is SHA-256("gateway witness test vector seed"), then
# golang.org/x/mod/sumdb/note.Sign; the Go verifier opened it).
GO_SEED = bytes.fromhex("b53a3ab90bf46457521c63b9f0bf9641c4854bc14e8872eccfef7a00a20afc33")
GO_WITNESS_KEY = "witness.example/w1+016ea3cf+BKc0jQUeO8XEJFWjRWzSNTF/2gqZ/UJRvxk4IlCG6QOH"
GO_COSIGNED = (
    TEXT + "\n— witness.example/w1 AW6jzwAAAABrFUgsZ2SJRipgcqceyH41JFu4jFHqh2I1HpeUN6SLLLW1c8"
    "Ttm5ovTqNbIBdaZuHayPuSQBSfA6UU1lbmHahfFyX7AQ==\n"
)


def go_private() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(GO_SEED)


def test_go_reference_cosignature_verifies_and_we_cosign_identically() -> None:
    witness = WitnessKey.parse(GO_WITNESS_KEY)
    assert witness.encode() == GO_WITNESS_KEY
    [cosignature] = verify_cosignatures(GO_COSIGNED, [witness], minimum=1)
    assert cosignature.witness == witness
    # Ed25519 is deterministic: the same timestamp gives the same bytes.
    line = cosign(TEXT, witness, go_private(), cosignature.timestamp).line()
    assert line == GO_COSIGNED.split("\n\n")[1]
    assert cosignature.line == line


def test_key_id_uses_the_cosignature_type_byte() -> None:
    witness = WitnessKey.parse(GO_WITNESS_KEY)
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + witness.public_key).digest()[:4]
    assert witness.key_id == expected == cosignature_key_id(witness.name, witness.public_key)
    # The same public key as a plain note key has another ID: one cannot stand for the other.
    assert VerifierKey(witness.name, witness.public_key).key_id != witness.key_id


def test_signed_message_is_header_time_and_body() -> None:
    assert signed_message(TEXT, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + TEXT.encode()
    with pytest.raises(ValueError):
        signed_message(TEXT, 2**63)


def test_witness_key_parse_refuses_other_types_and_bad_ids() -> None:
    plain = VerifierKey("w", bytes(32)).encode()  # type 0x01
    with pytest.raises(ValueError, match="type 0x04"):
        WitnessKey.parse(plain)
    good = WitnessKey("w", bytes(range(32))).encode()
    name, key_id, blob = good.split("+")
    with pytest.raises(ValueError, match="key ID"):
        WitnessKey.parse(f"{name}+00000000+{blob}")
    with pytest.raises(ValueError):
        WitnessKey.parse(f"{name}+{key_id}+{blob}=")


def _witness(name: str) -> tuple[WitnessKey, ed25519.Ed25519PrivateKey]:
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    return WitnessKey(name, public), private


def _cosigned(text: str, *signers: tuple[WitnessKey, ed25519.Ed25519PrivateKey]) -> str:
    log = SigningKey.generate("example.com/audit-log")
    note = sign_note(text, [log])
    return note + "".join(cosign(text, key, private, 1700000000).line() for key, private in signers)


def test_minimum_counts_distinct_named_witnesses_only() -> None:
    a, b, c = _witness("w/a"), _witness("w/b"), _witness("w/c")
    note = _cosigned(TEXT, a, b, c)
    assert len(verify_cosignatures(note, [a[0], b[0]], minimum=2)) == 2
    with pytest.raises(NoteSignatureError, match=r"1 valid cosignatures.*2 required"):
        verify_cosignatures(note, [a[0]], minimum=2)
    with pytest.raises(ValueError):
        verify_cosignatures(note, [a[0]], minimum=0)


def test_forged_cosignature_by_a_named_witness_rejects_the_note() -> None:
    a, b = _witness("w/a"), _witness("w/b")
    # b's private key signs in a's name: same name and key ID as a, wrong signature.
    forged = NoteSignature(
        a[0].name, a[0].key_id, cosign(TEXT, b[0], b[1], 1700000000).signature
    ).line()
    note = _cosigned(TEXT) + forged
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_cosignatures(note, [a[0]], minimum=1)


def test_cosignature_of_another_checkpoint_is_not_valid_here() -> None:
    a = _witness("w/a")
    other = TEXT.replace("\n7\n", "\n8\n")
    replayed = cosign(other, a[0], a[1], 1700000000).line()
    with pytest.raises(NoteSignatureError):
        verify_cosignatures(_cosigned(TEXT) + replayed, [a[0]], minimum=1)


def test_changed_timestamp_breaks_the_signature() -> None:
    a = _witness("w/a")
    line = cosign(TEXT, a[0], a[1], 1700000000)
    moved = (1700000001).to_bytes(8, "big") + line.signature[8:]
    note = _cosigned(TEXT) + NoteSignature(line.name, line.key_id, moved).line()
    with pytest.raises(NoteSignatureError):
        verify_cosignatures(note, [a[0]], minimum=1)


def test_a_witness_cosigning_twice_is_refused() -> None:
    a = _witness("w/a")
    note = _cosigned(TEXT, a) + cosign(TEXT, a[0], a[1], 1700000005).line()
    with pytest.raises(NoteFormatError, match="twice"):
        verify_cosignatures(note, [a[0]], minimum=1)


def test_cosignature_lines_are_ignored_by_the_log_key_check() -> None:
    a = _witness("w/a")
    note = _cosigned(TEXT, a)
    parsed = parse_note(note)
    assert len(parsed.signatures) == 2
    assert base64.b64decode(note.splitlines()[-1].split(" ")[-1])[:4] == a[0].key_id
