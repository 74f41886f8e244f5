"""`gateway policy …`: working with policies (push to a development OPA, replay)."""

from __future__ import annotations

import argparse

from gateway.cli import policy_push, policy_replay


def register(commands: argparse._SubParsersAction) -> None:
    policy = commands.add_parser("policy", help="work with policies")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    policy_push.register(sub)
    policy_replay.register(sub)
