"""`gateway token`: development tokens.

Without ``--key`` it signs with the dev issuer key in var/dev, for the audience of
the dev gateway last started there (its URL, which it records once it listens:
gateway.dev_state), so `make run PORT=18400` and then `gateway token …` just work.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit


def register(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser(
        "token",
        help="mint a token with the dev issuer key",
        description="Mints a JWT for the dev gateway (or, with --key, for any issuer). "
        "The audience is the URL the dev gateway in var/dev recorded when it started "
        "(else port 8080); --port or --audience override it.",
    )
    token.add_argument("--sub", required=True, help="subject, e.g. agent:triage")
    token.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    token.add_argument("--scope", action="append", default=[], help="a scope (repeatable)")
    token.add_argument(
        "--act",
        action="append",
        default=[],
        help="an actor in the delegation chain, current actor first (repeatable)",
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument(
        "--port",
        type=int,
        help="TCP port of the dev gateway on 127.0.0.1, for the audience "
        "(default: the running dev gateway's, else 8080)",
    )
    token.add_argument("--key", type=Path, help="sign with this PEM key instead of the dev issuer")
    token.add_argument("--issuer", help="iss claim (with --key)")
    token.add_argument("--audience", help="aud claim (default: the dev gateway's URL)")
    token.set_defaults(handler=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.dev import DEV_ISSUER, dev_setup, dev_token
    from gateway.dev_state import dev_url
    from gateway.identity import mint_token

    url = f"http://127.0.0.1:{args.port}" if args.port else dev_url()
    if args.key:
        token = mint_token(
            args.key,
            issuer=args.issuer or DEV_ISSUER,
            audience=args.audience or url,
            sub=args.sub,
            roles=args.role,
            scopes=args.scope,
            act=args.act,
            ttl_s=args.ttl,
        )
    else:
        where = urlsplit(url)
        setup = dev_setup(host=where.hostname or "127.0.0.1", port=where.port or 80)
        token = dev_token(
            setup,
            sub=args.sub,
            roles=tuple(args.role),
            scopes=tuple(args.scope),
            act=tuple(args.act),
            ttl_s=args.ttl,
            audience=args.audience,
        )
    print(token)
    return 0
