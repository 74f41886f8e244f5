"""`gateway serve` and `gateway check-config`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

from gateway.config import load_config
from gateway.dev import DevSetup, banner, dev_setup
from gateway.errors import GatewayError
from gateway.policy import PolicyEngine
from gateway.policy.opa import OpaEngine


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, default=os.environ.get("GATEWAY_CONFIG"))
    serve.add_argument("--dev", action="store_true", help="built-in defaults, no config file")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--policy", type=Path, default=None, help="policy folder (dev mode)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--json-logs", action="store_true", help="JSON logs in dev mode too")
    serve.set_defaults(handler=cmd_serve)

    check = commands.add_parser("check-config", help="validate a config file and its policy")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_check_config)


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


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.app import build_policy_engine

    config = load_config(args.file)
    engine = build_policy_engine(config)
    print(f"{args.file}: ok")
    print(f"  audience   {config.audience}")
    print(f"  issuers    {', '.join(i.issuer for i in config.identity.issuers)}")
    print(f"  policy     {config.policy.engine} {_policy_state(engine)}")
    print(f"  storage    {config.storage.url.split('@')[-1]}")
    print(f"  upstreams  {', '.join(u.name for u in config.upstreams) or '(none)'}")
    return 0


def _policy_state(engine: PolicyEngine) -> str:
    """The revision; for an OPA engine its URL and whether it answers now. An OPA that is
    down does not make the file invalid (the gateway denies until OPA is up), so that
    is a warning, not an error."""
    if not isinstance(engine, OpaEngine):
        return str(engine.revision)

    async def probe() -> bool:
        try:
            return await engine.ready()
        finally:
            await engine.close()

    if anyio.run(probe):
        return f"{engine.url} (reachable; revision {engine.revision})"
    print(
        f"warning: OPA at {engine.url} is not reachable or not ready now; "
        "the gateway will deny every call until it is",
        file=sys.stderr,
    )
    return f"{engine.url} (not reachable)"
