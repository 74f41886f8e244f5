"""The ``gateway`` command line.

One module per command group, each with a `register(commands)` that adds its
subcommands; this module assembles them. Commands that need a configuration take
``--config FILE`` (or ``$GATEWAY_CONFIG``); without one they use the dev-mode setup in
``var/dev``, so everything works right after ``make run``. Errors print one actionable
line to stderr and exit 1 (2 for usage errors, as argparse does).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import approvals, audit, catalog, db, policy, runs, serve, tokens, worker
from gateway.errors import GatewayError
from gateway.version import __version__

COMMAND_GROUPS = [serve, worker, tokens, catalog, policy, approvals, runs, audit, db]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Policy-enforcing gateway for AI-agent tool calls."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except GatewayError as error:
        print(f"gateway: error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
