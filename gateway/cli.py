"""The ``gateway`` command line.

Commands that need a configuration take ``--config FILE`` (or ``$GATEWAY_CONFIG``);
without one they use the dev-mode setup in ``var/dev``, so everything works right
after ``make run``. Errors print one actionable line to stderr and exit 1 (2 for
usage errors, as argparse does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from gateway.config import Config, load_config
from gateway.dev import DEV_ISSUER, DevSetup, banner, dev_setup, dev_token
from gateway.errors import GatewayError
from gateway.version import __version__

Handler = Callable[[argparse.Namespace], int]


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("GATEWAY_CONFIG"),
        help="config file (default: $GATEWAY_CONFIG, else the dev setup in var/dev)",
    )


def _config(args: argparse.Namespace) -> Config:
    if args.config:
        return load_config(args.config)
    return dev_setup().config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import build_app
    from gateway.logs import configure_logging

    configure_logging(args.log_level, json_format=not args.dev or args.json_logs)
    setup: DevSetup | None = None
    if args.dev:
        if args.config:
            raise GatewayError(
                "--dev and --config exclude each other: dev mode needs no config file"
            )
        setup = dev_setup(
            host=args.host or "127.0.0.1", port=args.port or 8080, policy_path=args.policy
        )
        config = setup.config
    elif args.config:
        config = load_config(args.config)
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        if overrides:
            config = config.model_copy(
                update={"server": config.server.model_copy(update=overrides)}
            )
    else:
        raise GatewayError("give --config FILE, or --dev for a gateway with built-in defaults")
    app = build_app(config)
    if setup is not None:
        print(banner(setup), flush=True)
    uvicorn.run(
        app,
        host=config.server.host,
        port=config.server.port,
        log_config=None,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    if args.key:
        from gateway.identity import mint_token

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


def cmd_tools(args: argparse.Namespace) -> int:
    from gateway.app import build_components

    config = _config(args)
    components = build_components(config)

    async def collect() -> list[dict[str, Any]]:
        async with anyio.create_task_group() as tasks:
            await components.catalog.start(tasks)
            tools = components.catalog.tools()
            status = components.catalog.upstream_status()
            await components.catalog.close()
            tasks.cancel_scope.cancel()
        for name, state in status.items():
            if not state.connected:
                print(f"warning: upstream {name} is not reachable: {state.detail}", file=sys.stderr)
        return [
            {
                "name": t.name,
                "risk": t.risk,
                "definition_hash": t.definition_hash,
                "description": t.description,
                "annotations": t.annotations,
            }
            for t in sorted(tools, key=lambda t: t.name)
        ]

    rows = anyio.run(collect)
    components.database.dispose()
    if args.json:
        print(json.dumps({"tools": rows}, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    print(f"{'TOOL':<{width}}  {'RISK':<6}  DEFINITION HASH")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['risk']:<6}  {row['definition_hash']}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.app import build_policy_engine

    config = load_config(args.file)
    engine = build_policy_engine(config)
    print(f"{args.file}: ok")
    print(f"  audience   {config.audience}")
    print(f"  issuers    {', '.join(i.issuer for i in config.identity.issuers)}")
    print(f"  policy     {config.policy.engine} {engine.revision}")
    print(f"  storage    {config.storage.url.split('@')[-1]}")
    print(f"  upstreams  {', '.join(u.name for u in config.upstreams) or '(none)'}")
    return 0


def cmd_audit_tail(args: argparse.Namespace) -> int:
    from gateway.audit import tail
    from gateway.store import create_engine

    config = _config(args)
    engine = create_engine(config.storage.url)
    try:
        entries = tail(engine, args.n)
    finally:
        engine.dispose()
    if args.json:
        for entry in entries:
            print(
                json.dumps(
                    {
                        "seq": entry.seq,
                        "ts": entry.ts,
                        "kind": entry.kind,
                        "ref": entry.ref,
                        "leaf_hash": entry.leaf_hash.hex(),
                        "payload": entry.payload,
                    }
                )
            )
        return 0
    for entry in entries:
        payload = "(erased)" if entry.payload is None else json.dumps(entry.payload, sort_keys=True)
        print(f"{entry.seq:>8}  {entry.ts}  {entry.kind:<16} {entry.ref}")
        print(f"          {payload}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Policy-enforcing gateway for AI-agent tool calls."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, default=os.environ.get("GATEWAY_CONFIG"))
    serve.add_argument("--dev", action="store_true", help="built-in defaults, no config file")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--policy", type=Path, default=None, help="policy folder (dev mode)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--json-logs", action="store_true", help="JSON logs in dev mode too")
    serve.set_defaults(handler=cmd_serve)

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

    tools = commands.add_parser("tools", help="list the tool catalog with risk and hashes")
    _add_config_option(tools)
    tools.add_argument("--json", action="store_true")
    tools.set_defaults(handler=cmd_tools)

    check = commands.add_parser("check-config", help="validate a config file and its policy")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_check_config)

    audit = commands.add_parser("audit", help="read the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_tail = audit_commands.add_parser("tail", help="newest entries with their payloads")
    _add_config_option(audit_tail)
    audit_tail.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    audit_tail.add_argument("--json", action="store_true", help="one JSON object per line")
    audit_tail.set_defaults(handler=cmd_audit_tail)
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
