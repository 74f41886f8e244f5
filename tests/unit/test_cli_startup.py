"""The command line's manners: help without loading the gateway, help text for every
option (numbers with their unit), and a reader that goes away ends it quietly.

How fast `--help` is, is measured (bench/start_time.py), never asserted: what is
asserted is the cause of slowness, heavy modules imported before they are needed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser
from tests.support.processes import REPO

# What a command's handler may import, but building the parser must not.
HEAVY = {
    "sqlalchemy",
    "alembic",
    "pydantic",
    "httpx",
    "anyio",
    "mcp",
    "regopy",
    "cryptography",
    "jwt",
    "yaml",
    "starlette",
    "uvicorn",
    "jsonschema",
    "rfc8785",
}

# A number's help names what it counts or measures.
UNITS = re.compile(
    r"\b(seconds|in seconds|entries|port|approvals|runs|loops|decisions|seq|in entries"
    r"|cosignatures)\b"
)


def _groups() -> list[str]:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(commands.choices)


def _imported_by(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from gateway.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(' '.join(sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert "usage: gateway" in done.stdout, done.stdout + done.stderr
    return {name.split(".")[0] for name in done.stderr.split()}


@pytest.mark.parametrize("group", [None, *_groups()])
def test_help_imports_nothing_heavy(group: str | None) -> None:
    argv = ["--help"] if group is None else [group, "--help"]
    assert _imported_by(argv) & HEAVY == set()


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield " ".join(path), action


def test_every_option_has_help_and_every_number_its_unit() -> None:
    missing, unitless = [], []
    for command, action in _options(build_parser()):
        name = "/".join(action.option_strings) or action.dest
        if not action.help:
            missing.append(f"gateway {command} {name}")
        elif action.type in (int, float) and not UNITS.search(action.help):
            unitless.append(f"gateway {command} {name}: {action.help}")
    assert missing == []
    assert unitless == []


def test_the_rotation_overlap_default_is_the_rotation_modules() -> None:
    from gateway.audit.rotation import DEFAULT_OVERLAP
    from gateway.cli import audit_admin

    assert audit_admin.DEFAULT_OVERLAP == DEFAULT_OVERLAP


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    # The pipe's reading end is closed before the command starts, so its first write
    # fails with EPIPE, as `gateway … | head` does once head has read enough. (`token`
    # is a command that prints without a gateway: its dev setup goes to tmp_path.)
    (tmp_path / "policies").symlink_to(REPO / "policies")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "token", "--sub", "agent:pipe"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141
