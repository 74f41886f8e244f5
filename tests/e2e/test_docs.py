"""Every command in README.md and docs/*.md, run as a reader would, against a dev
gateway (`gateway serve --dev` in a folder of its own, on a free port).

The conventions a document follows are in tests/support/doc_snippets.py (and README,
"Development"): `sh` blocks run, in order, one bash session per document, and each
command must succeed (curl fails on an HTTP error status); a block that cannot run
here is marked `<!-- doc-test: skip because … -->` and listed, with its reason, at
the end of every run; a usage synopsis is checked against the command line; a plan
shown in a document is the file the commands use. `http://127.0.0.1:8080`, the
documented default, stands for the test gateway's URL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Iterator

import pytest

from gateway.cli import build_parser
from tests.support.dev_gateway import DevGateway, environment
from tests.support.doc_snippets import (
    NOT_RUN,
    Block,
    blocks_of,
    documents,
    problems,
    synopses,
)
from tests.support.processes import REPO

DOCUMENTS = documents(REPO)
BLOCKS = [block for document in DOCUMENTS for block in blocks_of(document, REPO)]
DEFAULT_URL = "http://127.0.0.1:8080"
# Reported at the end of the run (tests/e2e/conftest.py): never skipped silently.
NOT_RUN[:] = [b for b in BLOCKS if b.mark == "skip"]
TIMEOUT_S = 600


def test_every_code_block_runs_or_says_why_not() -> None:
    found = [problem for block in BLOCKS for problem in problems(block, REPO)]
    assert found == []
    assert all(block.reason for block in NOT_RUN)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command(path: list[str]) -> argparse.ArgumentParser | None:
    parser: argparse.ArgumentParser | None = build_parser()
    for word in path:
        parser = _subcommands(parser).get(word) if parser else None
    return parser


def test_every_synopsis_matches_the_command_line() -> None:
    wrong = []
    checked = 0
    for block in (b for b in BLOCKS if b.mark == "synopsis"):
        for synopsis in synopses(block):
            commands = [(p, _command(p)) for p in synopsis.alternatives]
            for path, command in commands:
                checked += 1
                if command is None:
                    wrong.append(f"{synopsis.where}: no command `gateway {' '.join(path)}`")
            known = {
                option
                for _, command in commands
                if command is not None
                for action in command._actions
                for option in action.option_strings
            }
            wrong += [
                f"{synopsis.where}: `gateway {' '.join(commands[0][0])}` has no {option}"
                for option in synopsis.options
                if option not in known
            ]
    assert wrong == []
    assert checked > 20  # the README's command list alone names more


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevGateway]:
    gateway = DevGateway.start(
        tmp_path_factory.mktemp("docs") / "checkout", copied=("policies", "scripts")
    )
    yield gateway
    gateway.stop()


def script(blocks: list[Block], url: str) -> str:
    lines = [
        "set -euo pipefail",
        # What a reader sees as success: an HTTP error status fails the command.
        'curl() { command curl --show-error --fail-with-body "$@"; }',
        "trap 'echo \"doc-test: failed: $BASH_COMMAND\" >&2' ERR",
    ]
    for block in blocks:
        lines.append(f"echo '--- doc-test: {block.where}' >&2")
        lines.append(block.text.replace(DEFAULT_URL, url))
    return "\n".join(lines) + "\n"


RUNNABLE = {
    document.relative_to(REPO).as_posix(): [
        b for b in BLOCKS if b.runs and b.document == document.relative_to(REPO).as_posix()
    ]
    for document in DOCUMENTS
}


@pytest.mark.parametrize("document", [d for d, blocks in RUNNABLE.items() if blocks])
def test_the_commands_of(document: str, dev: DevGateway) -> None:
    text = script(RUNNABLE[document], dev.url)
    path = dev.root / f"{document.replace('/', '_')}.sh"
    path.write_text(text)
    env = {**environment(), "PATH": f"{dev.root / '.venv/bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(path)],
        cwd=dev.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    (dev.root / f"{document.replace('/', '_')}.log").write_text(output)
    assert done.returncode == 0, f"{document}: a command failed\n" + "\n".join(
        output.splitlines()[-60:]
    )
    ran = [line for line in done.stderr.splitlines() if line.startswith("--- doc-test: ")]
    assert len(ran) == len(RUNNABLE[document])  # every block ran to its end
