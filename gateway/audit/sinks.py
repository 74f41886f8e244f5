"""Where signed checkpoints are published outside the database.

Truncating the log's tail (or rewriting it with recomputed hashes) is only
detectable against a checkpoint held somewhere the database's owner cannot rewrite
(architecture.md §6). A sink is such a place: a directory (on another volume, synced
elsewhere, …). A checkpoint is published again, at the same size, when witnesses'
cosignatures were added to it (`gateway.audit.witnessing`): the note then carries the
same text and every signature it had, and more.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from gateway.tlog.checkpoint import Checkpoint, parse_checkpoint
from gateway.tlog.errors import CheckpointFormatError, NoteFormatError
from gateway.tlog.note import parse_note

logger = logging.getLogger("gateway.audit")

LATEST = "latest"
KEYS = "keys"


class CheckpointSink(Protocol):
    def publish(self, checkpoint: Checkpoint, note: str) -> bool:
        """Publishes a signed checkpoint; False (and nothing written) if it is not
        newer than what the sink already holds, nor the same checkpoint with more
        signatures (cosignatures). Raises OSError on failure."""
        ...

    def _adds_signatures(self, name: str, note: str) -> bool:
        """Whether ``note`` is the published note ``name`` with more signature lines
        (and none removed): only that may replace a published checkpoint."""
        try:
            old = parse_note((self.path / name).read_text(encoding="utf-8"))
            new = parse_note(note)
        except (OSError, NoteFormatError):
            return False
        return new.text == old.text and set(old.signatures) < set(new.signatures)

    def publish_keys(self, text: str) -> None:
        """Publishes the exported public keys (`gateway.tlog.keys.format_keys`)."""
        ...


class DirectorySink:
    """A directory holding ``<size>`` (one signed checkpoint per file, named by its
    tree size), ``latest`` (a copy of the newest) and ``keys`` (the public keys with
    their validity).

    Every file is written atomically (temporary file, fsync, rename, fsync of the
    directory), so a reader or a crash never sees half a checkpoint. ``latest``
    never goes backwards, also with several gateway processes publishing to one
    directory: the check and the rename happen under an exclusive lock file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DirectorySink({str(self.path)!r})"

    def published_size(self) -> int | None:
        """The tree size of ``latest``, or None when nothing was published."""
        try:
            note = (self.path / LATEST).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return parse_checkpoint(parse_note(note).text).size
        except (NoteFormatError, CheckpointFormatError):
            # A damaged `latest` must not let an older checkpoint replace it: fall
            # back to the largest size published as a file of its own.
            sizes = [
                int(p.name) for p in self.path.iterdir() if p.name.isascii() and p.name.isdigit()
            ]
            return max(sizes, default=None)

    def publish(self, checkpoint: Checkpoint, note: str) -> bool:
        self.path.mkdir(parents=True, exist_ok=True)
        data = note.encode("utf-8")
        with self._locked():
            current = self.published_size()
            if current is not None and checkpoint.size == current:
                if not self._adds_signatures(str(checkpoint.size), note):
                    return False
            elif current is not None and checkpoint.size < current:
                logger.warning(
                    "not publishing checkpoint %d to %s: it already holds %d",
                    checkpoint.size,
                    self.path,
                    current,
                )
                return False
            self._write(str(checkpoint.size), data)
            self._write(LATEST, data)
        return True

    def _adds_signatures(self, name: str, note: str) -> bool:
        """Whether ``note`` is the published note ``name`` with more signature lines
        (and none removed): only that may replace a published checkpoint."""
        try:
            old = parse_note((self.path / name).read_text(encoding="utf-8"))
            new = parse_note(note)
        except (OSError, NoteFormatError):
            return False
        return new.text == old.text and set(old.signatures) < set(new.signatures)

    def publish_keys(self, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._write(KEYS, text.encode("utf-8"))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, name: str, data: bytes) -> None:
        final = self.path / name
        tmp = self.path / f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is on disk.
        directory = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
