"""The metrics directory of one `gateway serve --processes N`.

The supervisor makes a fresh, empty directory for each serve and puts it in the
environment its server processes are spawned with, before any of them imports
prometheus_client: each then keeps its values in files there, and a scrape of any one
adds up all of them (`gateway.metrics.exposition`). Fresh, so a serve never adds
the files of an earlier one (a pid may be reused); removed when the serve ends. When a
process ends, its live gauges' files are removed (`process_ended`): the number of
decisions waiting is what the living processes say.

A supervisor killed with `kill -9` cannot remove its directory, so each serve sweeps
those of dead serves when it starts (`sweep`). Whose a directory is, and whether its
serve lives, is not guessed from a pid (a pid is reused, by anything): the supervisor
holds an exclusive `flock` on a lock file inside its directory for the whole serve,
and the kernel drops that lock when the supervisor dies, however it dies. A directory
whose lock can be taken is stale. The directory gets its final name only once its
lock is held (a rename), so a serve starting meanwhile never finds it unlocked. The
supervisor's pid in the name is for people reading `$TMPDIR`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("gateway.serve")

# As gateway.metrics.MULTIPROCESS_ENV (not imported: the supervisor keeps no metrics).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "gateway-serve-metrics-"
LOCK = "supervisor.lock"  # not *.db: prometheus_client reads only those
# <prefix><supervisor pid>-<random>, and ".new" while its lock is being taken.
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-[0-9a-f]{16}(\.new)?")


@contextmanager
def shared_metrics() -> Iterator[Path]:
    """A new metrics directory in the environment of processes started within; the
    directories of dead serves in the same place are removed first."""
    parent = Path(tempfile.gettempdir())
    directory, lock = _create(parent)
    previous = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = str(directory)
    try:
        sweep(parent, current=directory)
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)
        os.close(lock)


def _create(parent: Path) -> tuple[Path, int]:
    """A new directory in ``parent`` and the descriptor holding its lock."""
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
    staging = parent / f"{name}.new"
    staging.mkdir(mode=0o700)
    try:
        # Not inherited (O_CLOEXEC is Python's default): only this process holds it.
        lock = os.open(staging / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, parent / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return parent / name, lock


def sweep(parent: Path, *, current: Path) -> list[Path]:
    """Removes the metrics directories in ``parent`` of serves that ended without
    removing theirs; the paths removed. Only directories this user owns whose name
    carries the prefix, never ``current``, never one whose supervisor holds its lock."""
    removed = []
    for entry in parent.glob(PREFIX + "*"):
        match = _NAME.fullmatch(entry.name)
        if match is None or entry == current or not _ours(entry):
            continue
        if match.group(2):
            # Still being created, or its supervisor died before holding the lock:
            # only the pid can tell (a reused pid leaves an empty directory behind).
            if not _alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        if _remove_unlocked(entry):
            removed.append(entry)
    if removed:
        log.info(
            "removed %d metrics director%s of serves that ended without removing theirs: %s",
            len(removed),
            "y" if len(removed) == 1 else "ies",
            ", ".join(p.name for p in removed),
        )
    return removed


def _ours(entry: Path) -> bool:
    """A real directory (not a link) of this user: another user's is not ours to judge."""
    try:
        info = entry.lstat()
    except OSError:
        return False  # gone meanwhile
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def _remove_unlocked(directory: Path) -> bool:
    try:
        lock = os.open(directory / LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False  # no lock file: not made by a supervisor, or removed meanwhile
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its supervisor is alive
        # Held while removing: another serve sweeping at once skips it.
        shutil.rmtree(directory, ignore_errors=True)
        return not directory.exists()
    finally:
        os.close(lock)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def process_ended(directory: Path, pid: int) -> None:
    """Forgets the live gauges of process ``pid``; its counters and histograms stay in
    the totals."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(directory))
