"""Checkpoints (C2SP tlog-checkpoint) and receipts (C2SP tlog-proof): exact formats,
round trips, strict rejections, and verification against keys valid for a size."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from gateway.audit.keys import SigningKey
from gateway.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from gateway.tlog.errors import (
    CheckpointFormatError,
    NoteSignatureError,
    ProofError,
    ReceiptFormatError,
    RootMismatchError,
)
from gateway.tlog.keys import AuditKey
from gateway.tlog.leaf import ZERO_HASH, build_leaf, leaf_hash
from gateway.tlog.proof import MemoryTree, inclusion_proof
from gateway.tlog.receipt import Receipt, format_receipt, parse_receipt, verify_receipt

ORIGIN = "test.example/audit"
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


def test_body_is_exactly_three_lines() -> None:
    checkpoint = Checkpoint(ORIGIN, 1234, ROOT)
    assert checkpoint.body() == f"{ORIGIN}\n1234\n{ROOT_B64}\n"
    assert parse_checkpoint(checkpoint.body()) == checkpoint
    extended = Checkpoint(ORIGIN, 0, ROOT, ("ext one", "ext two"))
    assert parse_checkpoint(extended.body()) == extended


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{ORIGIN}\n12\n{ROOT_B64}", "end with a newline"),
        (f"{ORIGIN}\n12\n", "needs origin, tree size and root"),
        (f"\n12\n{ROOT_B64}\n", "origin line is empty"),
        (f"{ORIGIN}\n012\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n+12\n{ROOT_B64}\n", "decimal"),
        (f"{ORIGIN}\n 12\n{ROOT_B64}\n", "decimal"),
        (f"{ORIGIN}\n١٢\n{ROOT_B64}\n", "decimal"),  # Arabic-Indic digits
        (f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", "exceeds"),
        (f"{ORIGIN}\n12\n{ROOT_B64[:-1]}\n", "base64"),
        (f"{ORIGIN}\n12\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"{ORIGIN}\n12\n{ROOT_B64[:-2]}9=\n", "canonical base64"),
        (f"{ORIGIN}\n12\n{ROOT_B64}\n\n", "extension lines must not be empty"),
    ],
)
def test_malformed_checkpoints_are_rejected(text: str, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message):
        parse_checkpoint(text)


def test_open_checkpoint_checks_origin_and_key_validity(key: SigningKey) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 10, ROOT), [key])
    valid = [AuditKey(key.verifier, 0, None)]
    checkpoint, verified = open_checkpoint(note, valid, origin=ORIGIN)
    assert checkpoint.size == 10 and len(verified.verified) == 1
    with pytest.raises(CheckpointFormatError, match="is of log"):
        open_checkpoint(note, valid, origin="other.example/log")
    # A key retired at size 9 (or not yet valid) does not count for size 10.
    for keys in ([AuditKey(key.verifier, 0, 9)], [AuditKey(key.verifier, 11, None)]):
        with pytest.raises(NoteSignatureError, match="not signed by any trusted key"):
            open_checkpoint(note, keys, origin=ORIGIN)


def test_dual_signed_checkpoint_verifies_with_either_key(key: SigningKey) -> None:
    new = SigningKey.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 10, ROOT), [key, new])
    old_only = [AuditKey(key.verifier, 0, 10)]
    new_only = [AuditKey(new.verifier, 10, None)]
    for keys in (old_only, new_only, old_only + new_only):
        open_checkpoint(note, keys, origin=ORIGIN)


# --- receipts ----------------------------------------------------------------------


def make_log(n: int) -> list[bytes]:
    leaves, prev = [], ZERO_HASH
    for seq in range(n):
        leaf = build_leaf(
            origin=ORIGIN,
            seq=seq,
            prev=prev,
            ts="2026-11-21T10:00:00.000Z",
            kind="call.attempt",
            ref=f"req-{seq}",
            commitment=bytes(32),
        )
        leaves.append(leaf)
        prev = leaf_hash(leaf)
    return leaves


@pytest.fixture(scope="module")
def log(key: SigningKey) -> tuple[list[bytes], str, list[AuditKey]]:
    leaves = make_log(11)
    tree = MemoryTree(leaf_hash(leaf) for leaf in leaves)
    note = sign_checkpoint(Checkpoint(ORIGIN, 11, tree.root()), [key])
    receipt = format_receipt(6, inclusion_proof(tree, 6, 11), note)
    return leaves, receipt, [AuditKey(key.verifier, 0, None)]


def test_receipt_format(log: tuple[list[bytes], str, list[AuditKey]]) -> None:
    _, receipt, _ = log
    lines = receipt.split("\n")
    assert lines[:2] == ["c2sp.org/tlog-proof@v1", "index 6"]
    assert all(len(base64.b64decode(line)) == 32 for line in lines[2:6])
    assert lines[6] == "" and lines[7] == ORIGIN and lines[8] == "11"
    parsed = parse_receipt(receipt)
    assert parsed.index == 6 and len(parsed.proof) == 4 and parsed.extra is None
    assert parsed.text() == receipt
    with_extra = Receipt(6, parsed.proof, parsed.checkpoint, b"context")
    assert parse_receipt(with_extra.text()) == with_extra
    assert with_extra.text().split("\n")[1] == "extra Y29udGV4dA=="


def test_receipt_verifies_the_entry(log: tuple[list[bytes], str, list[AuditKey]]) -> None:
    leaves, receipt, keys = log
    checkpoint = verify_receipt(receipt, leaves[6], origin=ORIGIN, keys=keys)
    assert checkpoint.size == 11
    with pytest.raises(ProofError, match="receipt is for index 6"):
        verify_receipt(receipt, leaves[5], origin=ORIGIN, keys=keys)
    forged = leaves[6].replace(b"req-6", b"req-X")
    with pytest.raises(RootMismatchError):
        verify_receipt(receipt, forged, origin=ORIGIN, keys=keys)
    stranger = [AuditKey(SigningKey.generate(ORIGIN).verifier, 0, None)]
    with pytest.raises(NoteSignatureError):
        verify_receipt(receipt, leaves[6], origin=ORIGIN, keys=stranger)


def _swap_line(number: int, value: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        lines = text.split("\n")
        lines[number] = value
        return "\n".join(lines)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_swap_line(0, "c2sp.org/tlog-proof@v2"), "must start with"),
        (_swap_line(1, "index 06"), "canonical decimal"),
        (_swap_line(1, "index -6"), "canonical decimal"),
        (_swap_line(1, "idx 6"), "no 'index <N>' line"),
        (_swap_line(2, "not base64!"), "not base64"),
        (_swap_line(2, base64.b64encode(bytes(31)).decode()), "not 32 bytes"),
        (_swap_line(1, "extra \nindex 6"), "no data|not canonical"),
        (_swap_line(8, "011"), "checkpoint is malformed"),
        (lambda text: text.replace("\n\n", "\n", 1), "checkpoint is malformed|not base64"),
        (lambda text: text.split("\n\n", 1)[0], "no blank line"),
    ],
)
def test_malformed_receipts_are_rejected(
    log: tuple[list[bytes], str, list[AuditKey]], mutate: Callable[[str], str], message: str
) -> None:
    with pytest.raises(ReceiptFormatError, match=message):
        parse_receipt(mutate(log[1]))
