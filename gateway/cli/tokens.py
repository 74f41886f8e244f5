"""`gateway token`: development tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.dev import DEV_ISSUER, dev_setup, dev_token
from gateway.identity import mint_token


def register(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser("token", help="mint a token with the dev issuer key")
    token.add_argument("--sub", required=True, help="subject, e.g. agent:triage")
    token.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    token.add_argument("--scope", action="append", default=[], help="a scope (repeatable)")
    token.add_argument(
        "--act",
        action="append",
        default=[],
        help="an actor in the delegation chain, current actor first (repeatable)",
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--port", type=int, default=8080, help="port of the dev gateway (audience)")
    token.add_argument("--key", type=Path, help="sign with this PEM key instead of the dev issuer")
    token.add_argument("--issuer", help="iss claim (with --key)")
    token.add_argument("--audience", help="aud claim (with --key)")
    token.set_defaults(handler=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    if args.key:
        token = mint_token(
            args.key,
            issuer=args.issuer or DEV_ISSUER,
            audience=args.audience or "http://127.0.0.1:8080",
            sub=args.sub,
            roles=args.role,
            scopes=args.scope,
            act=args.act,
            ttl_s=args.ttl,
        )
    else:
        setup = dev_setup(port=args.port)
        token = dev_token(
            setup,
            sub=args.sub,
            roles=tuple(args.role),
            scopes=tuple(args.scope),
            act=tuple(args.act),
            ttl_s=args.ttl,
        )
    print(token)
    return 0
