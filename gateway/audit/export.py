"""Exporting the audit log to a directory an auditor can verify offline, and reading
such a directory (or a database) back as one `LogSource` for the verifier.

The export directory (docs/audit.md, "Verifying the log")::

    entries.jsonl       {"seq": N, "leaf": "<base64 of the stored leaf bytes>",
                         "leaf_hash": "<hex>"}            one line per entry, seq order
    payloads.jsonl      {"seq": N, "salt": "<base64>", "payload": "<JCS text>"}
                                                          seq order; erased ones absent
    checkpoints/<size>  every stored signed checkpoint note, verbatim
    keys                `gateway.audit.keys.format_keys` (public keys + validity)

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

from sqlalchemy import Engine, select

from gateway.audit.errors import ChainError, LeafFormatError
from gateway.audit.keys import AuditKey, format_keys, parse_keys, read_keys
from gateway.audit.leaf import parse_leaf
from gateway.audit.reader import chain_head, iter_chain_rows
from gateway.audit.records import ChainRow
from gateway.store.tables import audit_checkpoints

ENTRIES_FILE = "entries.jsonl"
PAYLOADS_FILE = "payloads.jsonl"
CHECKPOINTS_DIR = "checkpoints"
KEYS_FILE = "keys"


@dataclass(frozen=True)
class ExportSummary:
    entries: int
    payloads: int
    checkpoints: int
    keys: int


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


def export_log(engine: Engine, out: Path) -> ExportSummary:
    """Writes the export of the log in ``engine`` to ``out`` (created; existing
    export files are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CHECKPOINTS_DIR).mkdir(exist_ok=True)
    # Checkpoints first, then the head: a checkpoint signed meanwhile is then still
    # covered by the exported entries (checkpoints only cover committed entries), so
    # a concurrent checkpointer cannot make a clean log look truncated.
    notes = _stored_notes(engine)
    keys = read_keys(engine)
    head = chain_head(engine)
    size = 0 if head is None else head.size
    entries = payloads = 0
    with (
        (out / ENTRIES_FILE).open("w", encoding="ascii") as entries_out,
        (out / PAYLOADS_FILE).open("w", encoding="utf-8") as payloads_out,
    ):
        for row in iter_chain_rows(engine, stop=size):
            entries_out.write(
                json.dumps(
                    {
                        "seq": row.seq,
                        "leaf": base64.b64encode(row.leaf).decode("ascii"),
                        "leaf_hash": row.leaf_hash.hex(),
                    }
                )
                + "\n"
            )
            entries += 1
            if row.payload_jcs is not None and row.salt is not None:
                # The JCS text verbatim (not re-serialized): it is the commitment's input.
                payload = row.payload_jcs.decode("utf-8")
                salt = base64.b64encode(row.salt).decode("ascii")
                record = {"seq": row.seq, "salt": salt, "payload": payload}
                payloads_out.write(json.dumps(record, ensure_ascii=False) + "\n")
                payloads += 1
    for old in (out / CHECKPOINTS_DIR).iterdir():
        old.unlink()  # a stale checkpoint from an earlier export must not linger
    for note_size, note in notes:
        (out / CHECKPOINTS_DIR / str(note_size)).write_text(note, encoding="utf-8")
    (out / KEYS_FILE).write_text(format_keys(keys), encoding="utf-8")
    return ExportSummary(entries, payloads, len(notes), len(keys))


def database_source(engine: Engine) -> LogSource:
    """The log as stored in ``engine``."""
    origin = None
    for row in iter_chain_rows(engine, stop=1):
        origin = _origin_of(row.leaf)
    notes = _stored_notes(engine)
    return LogSource(
        describe=f"database {engine.url.render_as_string(hide_password=True)}",
        rows=lambda: iter_chain_rows(engine),
        checkpoints=[(f"checkpoint {size}", note) for size, note in notes],
        keys=read_keys(engine),
        origin=origin,
    )


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
        origin = _origin_of(row.leaf)
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


def _stored_notes(engine: Engine) -> list[tuple[int, str]]:
    query = select(audit_checkpoints.c.size, audit_checkpoints.c.note).order_by(
        audit_checkpoints.c.size
    )
    with engine.connect() as conn:
        return [(row.size, row.note) for row in conn.execute(query)]


def _origin_of(leaf: bytes) -> str | None:
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
