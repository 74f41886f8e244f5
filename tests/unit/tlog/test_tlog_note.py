"""Signed notes (C2SP signed-note) and Ed25519 note keys: round trips, rejections, and
byte-for-byte agreement with the Go reference (golang.org/x/mod/sumdb/note)."""

from __future__ import annotations

import base64
import hashlib
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.audit.keys import SigningKey, load_signing_key
from gateway.tlog.errors import NoteFormatError, NoteSignatureError
from gateway.tlog.keys import AuditKey, VerifierKey, ed25519_key_id, format_keys, parse_keys
from gateway.tlog.note import NoteSignature, parse_note, sign_note, verify_note

NAME = "example.com/audit-log"
TEXT = "example.com/audit-log\n7\nMfyM1jxwSMNcIYNHLdEIjtbcQXcBZrBxR9v2j3GlGEE=\n"

# Made with golang.org/x/mod/sumdb/note v0.42.0 (note.GenerateKey, note.Sign).
GO_SIGNER_KEY = (
    "PRIVATE+KEY+example.com/audit-log+2d4b2424+AQgc1KOQIvm3igmotGvGCXhT/pQfk9Y+p9cx2Td4p3IQ"
)
GO_VERIFIER_KEY = "example.com/audit-log+2d4b2424+Af5f2Vjtx3JsQP3lfge8fLw8Xfz0yJE/PpE8mjRjPKyo"
GO_NOTE = (
    TEXT + "\n— example.com/audit-log LUskJMqMrc26PE2VEdb0OIIwU1Pjhqo+W6RqwcMD2+Q9tFQjSQUFZe"
    "/OX3jmDOHlWZg881zdVAEnGdoWa/vV/Veodgc=\n"
)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(NAME)


def go_signing_key() -> SigningKey:
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])[1:]
    return SigningKey(NAME, ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def test_go_reference_note_verifies_and_we_sign_identically() -> None:
    verifier = VerifierKey.parse(GO_VERIFIER_KEY)
    assert verifier.encode() == GO_VERIFIER_KEY
    verified = verify_note(GO_NOTE, [verifier])
    assert verified.text == TEXT
    assert [s.name for s in verified.verified] == [NAME]
    ours = go_signing_key()
    assert ours.verifier == verifier
    assert sign_note(TEXT, [ours]) == GO_NOTE  # Ed25519 signatures are deterministic


def test_key_id_is_the_spec_hash() -> None:
    public = VerifierKey.parse(GO_VERIFIER_KEY).public_key
    expected = hashlib.sha256(NAME.encode() + b"\n\x01" + public).digest()[:4]
    assert ed25519_key_id(NAME, public) == expected == bytes.fromhex("2d4b2424")


def test_round_trip_and_dual_signing(key: SigningKey) -> None:
    other = SigningKey.generate(NAME)
    note = sign_note(TEXT, [key, other])
    both = verify_note(note, [key.verifier, other.verifier])
    assert [s.key_id for s in both.verified] == [key.key_id, other.key_id]
    only_one = verify_note(note, [other.verifier])
    assert [s.key_id for s in only_one.verified] == [other.key_id]
    assert [s.key_id for s in only_one.unverified] == [key.key_id]
    assert parse_note(note).text == TEXT


def test_bad_signature_rejects_the_note(key: SigningKey) -> None:
    note = parse_note(sign_note(TEXT, [key]))
    forged = bytearray(note.signatures[0].signature)
    forged[0] ^= 1
    line = NoteSignature(NAME, key.key_id, bytes(forged)).line()
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_note(TEXT + "\n" + line, [key.verifier])


def test_changed_text_rejects_the_note(key: SigningKey) -> None:
    note = sign_note(TEXT, [key])
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_note(note.replace("\n7\n", "\n8\n"), [key.verifier])


def test_same_key_under_another_name_is_not_trusted(key: SigningKey) -> None:
    # The key ID commits to the name: a verifier of the same public key under another
    # name has another ID, so the signature is just unknown.
    renamed = VerifierKey("example.com/other", key.verifier.public_key)
    with pytest.raises(NoteSignatureError, match="not signed by any trusted key"):
        verify_note(sign_note(TEXT, [key]), [renamed])


def test_only_unknown_signatures_reject_the_note(key: SigningKey) -> None:
    stranger = SigningKey.generate(NAME)
    with pytest.raises(NoteSignatureError, match="not signed by any trusted key"):
        verify_note(sign_note(TEXT, [stranger]), [key.verifier])


def test_unknown_signatures_beside_a_trusted_one_are_ignored(key: SigningKey) -> None:
    junk = NoteSignature("witness.example", b"\x00\x00\x00\x01", b"not a real signature").line()
    note = sign_note(TEXT, [key]) + junk + junk
    assert len(verify_note(note, [key.verifier]).unverified) == 2


def test_a_trusted_key_signing_twice_is_malformed(key: SigningKey) -> None:
    note = sign_note(TEXT, [key, key])
    with pytest.raises(NoteFormatError, match="signed twice"):
        verify_note(note, [key.verifier])


def signed(key: SigningKey) -> str:
    return sign_note(TEXT, [key])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda n: n.replace("— ", "- "), "does not start with '— '"),
        (lambda n: n.replace("— ", "—"), "does not start with '— '"),
        (lambda n: n.replace("\n\n", "\n"), "no blank line"),
        (lambda n: n.rstrip("\n"), "does not end with a newline"),
        (lambda n: n + "\n", "no signature lines"),
        (lambda n: n.replace(NAME + " ", NAME + "+x "), "must not contain"),
        (lambda n: n.replace("— " + NAME + " ", "— " + NAME), "no signature after"),
        (lambda n: n[:-2] + "\n", "not canonical base64|not base64"),
        (lambda n: n.rsplit(" ", 1)[0] + " AAAAAA==\n", "too short"),
        (lambda n: n.replace("7", "7\x07"), "control characters"),
        (lambda n: n.replace("7", "7\r"), "control characters"),
        (lambda n: TEXT + "\n", "no signature lines"),
    ],
    ids=[
        "hyphen",
        "no-space",
        "no-blank-line",
        "no-final-newline",
        "trailing-empty-line",
        "plus-in-name",
        "no-signature",
        "bad-base64",
        "short-signature",
        "bell",
        "carriage-return",
        "no-signatures",
    ],
)
def test_malformed_notes_are_rejected(
    key: SigningKey, mutate: Callable[[str], str], message: str
) -> None:
    with pytest.raises(NoteFormatError, match=message):
        verify_note(mutate(signed(key)), [key.verifier])


def test_invalid_utf8_and_too_many_signatures(key: SigningKey) -> None:
    with pytest.raises(NoteFormatError, match="UTF-8"):
        parse_note(signed(key).encode() + b"\xff")
    crowd = signed(key) + NoteSignature("w.example", b"\0\0\0\1", b"x").line() * 100
    with pytest.raises(NoteFormatError, match="more than 100"):
        parse_note(crowd)


def test_signing_refuses_invalid_texts(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="end with a newline"):
        sign_note("no newline", [key])
    with pytest.raises(ValueError, match="control characters"):
        sign_note("tab\there\n", [key])
    with pytest.raises(ValueError, match="at least one signer"):
        sign_note(TEXT, [])


@pytest.mark.parametrize(
    "text",
    [
        GO_VERIFIER_KEY.replace("+2d4b2424+", "+2d4b2425+"),  # wrong key ID
        GO_VERIFIER_KEY.replace("+Af5f", "+Af5e"),  # key changed, ID not
        GO_VERIFIER_KEY.replace("+Af5f", "+Av5f"),  # not signature type 0x01
        GO_VERIFIER_KEY[:-4],  # truncated base64
        "example.com/audit-log+2d4b2424",  # no key
        "+2d4b2424+Af5f2Vjtx3JsQP3lfge8fLw8Xfz0yJE/PpE8mjRjPKyo",  # no name
    ],
)
def test_verifier_key_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        VerifierKey.parse(text)


def test_signing_key_is_created_once_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.pem"
    first = load_signing_key(path, NAME)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_signing_key(path, NAME)
    assert again.verifier == first.verifier
    assert "PRIVATE" not in repr(first)


def test_key_export_round_trip() -> None:
    verifier = VerifierKey.parse(GO_VERIFIER_KEY)
    keys = [AuditKey(verifier, 0, 99), AuditKey(SigningKey.generate(NAME).verifier, 50, None)]
    text = format_keys(keys)
    assert text.splitlines()[0] == f"{GO_VERIFIER_KEY} 0 99"
    assert parse_keys(text) == keys
    assert keys[0].covers(99) and not keys[0].covers(100)
    assert keys[1].covers(50) and keys[1].covers(10**12) and not keys[1].covers(49)
    with pytest.raises(ValueError, match="key line 1"):
        parse_keys(f"{GO_VERIFIER_KEY} 007 -\n")
