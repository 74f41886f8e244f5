"""A small disk that a test fills: a tmpfs of a few megabytes mounted on a temporary
folder (``mount -t tmpfs -o size=…``, which needs root or CAP_SYS_ADMIN, as the suite
has in its container), and a filler file that takes every free byte of it."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHUNK = 64 * 1024


@contextmanager
def small_tmpfs(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``8m``), unmounted afterwards. Fails the test, naming
    what is missing, where a tmpfs cannot be mounted."""
    folder = Path(tempfile.mkdtemp(prefix="gateway-small-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.fail(
            f"cannot mount a {size} tmpfs for the disk-full test ({mounted.stderr.strip()}): "
            "run the suite as root or with CAP_SYS_ADMIN (as its container does)"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def fill(folder: Path) -> Path:
    """Writes a file in ``folder`` until the disk is full; returns it (delete it to give
    the space back)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = CHUNK
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2  # less than that is left: take it in ever smaller pieces
    finally:
        os.close(fd)
    return filler
