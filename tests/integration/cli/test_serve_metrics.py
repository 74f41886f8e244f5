"""The metrics directories of `gateway serve --processes N`: a serve sweeps those of
serves that died without removing theirs, and nothing else (gateway.cli.serve_metrics).

A serve here is a real process that made its directory as the supervisor does and
holds it until its stdin ends or it is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.serve_metrics import LOCK, MULTIPROCESS_ENV, PREFIX, shared_metrics, sweep
from tests.support.waiting import TIMEOUT_S

HOLDER = """
import sys
from pathlib import Path
from gateway.cli.serve_metrics import _create
directory, _lock = _create(Path(sys.argv[1]))
print(directory, flush=True)
sys.stdin.read()
"""


class Holder:
    """A process holding a metrics directory, as a live supervisor does."""

    def __init__(self, parent: Path) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.popen.stdout is not None
        self.directory = Path(self.popen.stdout.readline().strip())  # once it holds it
        assert self.directory.is_dir(), self.directory

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        assert self.popen.wait(TIMEOUT_S) == -signal.SIGKILL

    def end(self) -> None:
        """Ends without removing its directory (a supervisor killed later)."""
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        assert self.popen.wait(TIMEOUT_S) == 0


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.popen.poll() is None:
            holder.kill()


def dead_pid() -> int:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(ended.stdout)


def unlocked(parent: Path, name: str) -> Path:
    """A directory as a dead supervisor leaves it: its lock file, nobody holding it."""
    directory = parent / name
    directory.mkdir()
    (directory / LOCK).touch()
    (directory / "counter_123.db").write_bytes(b"x")
    return directory


def test_the_directory_of_a_killed_serve_is_removed_a_live_ones_kept(
    tmp_path: Path, holders: list[Holder]
) -> None:
    killed, live = Holder(tmp_path), Holder(tmp_path)
    holders += [killed, live]
    current = unlocked(tmp_path, f"{PREFIX}{os.getpid()}-{'0' * 16}")
    killed.kill()

    assert sweep(tmp_path, current=current) == [killed.directory]
    assert not killed.directory.exists()
    assert live.directory.is_dir() and current.is_dir()

    live.end()  # its lock goes with its process
    assert sweep(tmp_path, current=current) == [live.directory]
    assert current.is_dir()


def test_a_reused_pid_does_not_keep_a_dead_serves_directory(tmp_path: Path) -> None:
    """The name says this process (alive, no supervisor): the lock decides, not the pid."""
    stale = unlocked(tmp_path, f"{PREFIX}{os.getpid()}-{'a' * 16}")
    assert sweep(tmp_path, current=tmp_path / "none") == [stale]


def test_nothing_without_the_prefix_or_not_a_directory_of_ours_is_touched(
    tmp_path: Path,
) -> None:
    elsewhere = unlocked(tmp_path, "elsewhere")
    kept = [
        unlocked(tmp_path, "other"),
        unlocked(tmp_path, "gateway-metrics-abcdefgh"),  # an earlier version's name
        unlocked(tmp_path, f"{PREFIX}notes"),
        unlocked(tmp_path, f"{PREFIX}{dead_pid()}-{'b' * 16}-copy"),
        tmp_path / f"{PREFIX}{dead_pid()}-{'c' * 16}",  # a link to a stale directory
        tmp_path / f"{PREFIX}{dead_pid()}-{'d' * 16}",  # a file
        tmp_path / f"{PREFIX}{dead_pid()}-{'e' * 16}",  # no lock file
    ]
    kept[4].symlink_to(elsewhere)
    kept[5].write_text("not a directory")
    kept[6].mkdir()
    assert sweep(tmp_path, current=tmp_path / "none") == []
    assert all(path.exists() for path in kept)
    assert (elsewhere / LOCK).exists()


def test_a_directory_being_created_is_removed_only_once_its_creator_is_dead(
    tmp_path: Path,
) -> None:
    creating = tmp_path / f"{PREFIX}{os.getpid()}-{'1' * 16}.new"
    abandoned = tmp_path / f"{PREFIX}{dead_pid()}-{'2' * 16}.new"
    creating.mkdir()
    abandoned.mkdir()
    assert sweep(tmp_path, current=tmp_path / "none") == [abandoned]
    assert creating.is_dir()


def test_a_serve_holds_its_directory_sweeps_a_dead_ones_and_removes_its_own(
    tmp_path: Path, holders: list[Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # as TMPDIR would
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    killed = Holder(tmp_path)
    holders.append(killed)
    killed.kill()
    with shared_metrics() as directory:
        assert os.environ[MULTIPROCESS_ENV] == str(directory)
        assert directory.parent == tmp_path and directory.name.startswith(f"{PREFIX}{os.getpid()}-")
        assert not killed.directory.exists()
        # Held: another serve starting now keeps it.
        assert sweep(tmp_path, current=tmp_path / "none") == []
    assert MULTIPROCESS_ENV not in os.environ
    assert list(tmp_path.iterdir()) == []
