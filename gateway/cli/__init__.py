"""The ``gateway`` command line.

One module per command group, each with a `register(commands)` that adds its
subcommands; this module assembles them. Commands that need a configuration take
``--config FILE`` (or ``$GATEWAY_CONFIG``); without one they use the dev-mode setup in
``var/dev``, so everything works right after ``make run``. Errors print one actionable
line to stderr and exit 1 (2 for usage errors, as argparse does). A reader that goes
away (``gateway audit tail | head``) ends the command quietly with 141, what a Unix
tool killed by SIGPIPE reports.

Command modules import only the standard library at module level; each handler
imports what it needs, so ``--help`` is instant (tests/unit/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway.cli import (
    approvals,
    audit,
    catalog,
    db,
    demo,
    policy,
    runs,
    serve,
    tokens,
    witness,
    worker,
    workflows,
)
from gateway.errors import GatewayError
from gateway.version import __version__

COMMAND_GROUPS = [
    serve,
    worker,
    tokens,
    catalog,
    policy,
    approvals,
    runs,
    workflows,
    audit,
    db,
    demo,
    witness,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Policy-enforcing gateway for AI-agent tool calls."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            sys.stdout.flush()  # --help wrote here: a closed pipe shows now, not at exit
            raise
        try:
            code = int(args.handler(args))
        except GatewayError as error:
            print(f"gateway: error: {error.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except Exception as error:
            unavailable = _database_unavailable(error)
            if unavailable is None:
                raise
            print(f"gateway: error: {unavailable.message}", file=sys.stderr)
            return 1
        sys.stdout.flush()  # here, where a closed pipe can still be caught
        return code
    except BrokenPipeError:
        return _reader_went_away()


def _database_unavailable(error: Exception) -> GatewayError | None:
    """A database that cannot be reached (a process started while it is away, a
    command run against it) as the one-line error it is, not a driver traceback."""
    if "sqlalchemy" not in sys.modules:
        return None  # nothing touched a database; and --help stays free of the import
    from gateway.errors import DatabaseUnavailable
    from gateway.store import UNREACHABLE, describe_error

    if not isinstance(error, UNREACHABLE):
        return None
    # For the operator at the terminal: the driver's reason (a client never sees it).
    return DatabaseUnavailable(f"the database is unavailable ({describe_error(error)})")


def _reader_went_away() -> int:
    """The reader of stdout closed it. Point stdout at /dev/null so that the
    interpreter's final flush does not fail again with a traceback (Python's own
    recipe, docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
