"""What the offline verifier reads (`LogSource`), and an export directory read as one.

An export is the audit log written to a directory an auditor verifies offline
(`gateway.audit.export` writes it from the database, and reads a database as a
`LogSource` too). The export directory (docs/audit.md, "Verifying the log")::

    entries.jsonl       {"seq": N, "leaf": "<base64 of the stored leaf bytes>",
                         "leaf_hash": "<hex>"}            one line per entry, seq order
    payloads.jsonl      {"seq": N, "salt": "<base64>", "payload": "<JCS text>"}
                                                          seq order; erased ones absent
    checkpoints/<size>  every stored signed checkpoint note, verbatim
    keys                `gateway.tlog.keys.format_keys` (public keys + validity)

Nothing in it is trusted by being there: the verifier re-derives every hash from the
leaf bytes, and keys should come from the auditor, not from the directory (``--keys``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.tlog.entries import ChainRow
from gateway.tlog.errors import ChainError, LeafFormatError
from gateway.tlog.keys import AuditKey, parse_keys
from gateway.tlog.leaf import parse_leaf

ENTRIES_FILE = "entries.jsonl"
PAYLOADS_FILE = "payloads.jsonl"
CHECKPOINTS_DIR = "checkpoints"
KEYS_FILE = "keys"


@dataclass
class LogSource:
    """What the verifier reads, wherever it comes from: the rows in seq order (a
    fresh iterator per call), every signed checkpoint as ``(label, note)`` and the
    key record. ``origin`` is the first leaf's log (None for an empty log)."""

    describe: str
    rows: Callable[[], Iterator[ChainRow]]
    checkpoints: list[tuple[str, str]] = field(default_factory=list)
    keys: list[AuditKey] = field(default_factory=list)
    origin: str | None = None


def directory_source(path: Path) -> LogSource:
    """The log exported to ``path``. Raises FileNotFoundError without entries.jsonl;
    malformed lines surface as ChainError while the rows are read."""
    entries = path / ENTRIES_FILE
    if not entries.is_file():
        raise FileNotFoundError(f"{entries} does not exist: not an audit export")
    checkpoints: list[tuple[str, str]] = []
    folder = path / CHECKPOINTS_DIR
    if folder.is_dir():
        # Every file, whatever its name: a second note of one size (a fork) must be
        # seen even though it cannot share the file name of the first.
        for file in sorted(folder.iterdir(), key=_by_size):
            if file.is_file() and not file.name.startswith("."):
                checkpoints.append((f"{CHECKPOINTS_DIR}/{file.name}", _read_text(file)))
    keys_file = path / KEYS_FILE
    keys = parse_keys(keys_file.read_text(encoding="utf-8")) if keys_file.is_file() else []
    origin = None
    for row in _directory_rows(path):
        origin = origin_of(row.leaf)
        break
    return LogSource(
        describe=f"export {path}",
        rows=lambda: _directory_rows(path),
        checkpoints=checkpoints,
        keys=keys,
        origin=origin,
    )


def _directory_rows(path: Path) -> Iterator[ChainRow]:
    payloads = _payload_lines(path / PAYLOADS_FILE)
    pending = next(payloads, None)
    with (path / ENTRIES_FILE).open("r", encoding="utf-8") as lines:
        for position, line in enumerate(lines):
            record = _json_line(line, position, ENTRIES_FILE)
            try:
                seq = record["seq"]
                leaf = base64.b64decode(record["leaf"], validate=True)
                stored_hash = bytes.fromhex(record["leaf_hash"])
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise ChainError(
                    position, f"line {position + 1} of {ENTRIES_FILE} is malformed"
                ) from None
            if type(seq) is not int:
                raise ChainError(position, f"line {position + 1} of {ENTRIES_FILE}: bad seq")
            # A payload whose entry is gone is skipped here; the chain check reports
            # the missing entry itself.
            while pending is not None and pending[0] < seq:
                pending = next(payloads, None)
            salt = payload = None
            if pending is not None and pending[0] == seq:
                _, salt, payload = pending
                pending = next(payloads, None)
            # The export holds no indexed columns: take them from the leaf, which is
            # what the database's columns are checked against anyway.
            try:
                fields = parse_leaf(leaf)
                ts, kind, ref = fields.ts, fields.kind, fields.ref
            except LeafFormatError:
                ts = kind = ref = ""  # verify_chain_rows reports the leaf itself
            yield ChainRow(seq, ts, kind, ref, leaf, stored_hash, salt, payload)


def _payload_lines(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    if not path.is_file():
        return
    last = -1
    with path.open("r", encoding="utf-8") as lines:
        for position, line in enumerate(lines):
            record = _json_line(line, position, PAYLOADS_FILE)
            try:
                seq = record["seq"]
                salt = base64.b64decode(record["salt"], validate=True)
                payload = record["payload"].encode("utf-8")
            except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
                raise ChainError(
                    None, f"line {position + 1} of {PAYLOADS_FILE} is malformed"
                ) from None
            if type(seq) is not int or seq <= last:
                raise ChainError(
                    None, f"line {position + 1} of {PAYLOADS_FILE}: seq not in increasing order"
                )
            last = seq
            yield seq, salt, payload


def _json_line(line: str, position: int, name: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise ChainError(None, f"line {position + 1} of {name} is not a JSON object")
    return record


def origin_of(leaf: bytes) -> str | None:
    """The log a leaf says it belongs to; ``None`` for a leaf that is not valid (the
    verifier reports it)."""
    try:
        return parse_leaf(leaf).log
    except LeafFormatError:
        return None


def _read_text(file: Path) -> str:
    # Bytes that are not UTF-8 are kept (replaced) so that the note parser, not this
    # reader, reports the checkpoint as malformed, naming it.
    return file.read_bytes().decode("utf-8", errors="replace")


def _by_size(file: Path) -> tuple[int, str]:
    # Numeric order (4 before 12), so that faults come out in tree-size order.
    return (int(file.name) if file.name.isdecimal() else 2**64, file.name)
