"""`gateway serve` and `gateway check-config`.

`serve` takes its port before anything else: a port another process holds is a
one-line error before a key, a database row or an audit entry is written, and no
tokens are printed for a gateway that will not run. Dev mode prints its banner (and
records its URL for the other commands, gateway.dev_state) only once the server
listens, so whatever it says to paste works when it is shown.

With ``--processes N`` (``server.processes``) above 1 the port is N SO_REUSEPORT
sockets and `gateway.cli.supervisor` runs a whole gateway on each (docs/decisions/
0035); with 1, this process serves, as it always did.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.serve_process import STARTUP_FAILURE, AppStart, built, run_server
from gateway.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from gateway.config import Config
    from gateway.policy import PolicyEngine

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_PROCESSES = 64  # as server.processes allows
# How long the processes of `--processes N` have to drain on SIGTERM before they are
# killed: uvicorn's graceful shutdown (10 s) and the audit log's last appends.
DRAIN_S = 30.0


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("GATEWAY_CONFIG"),
        help="config file (default: $GATEWAY_CONFIG); not with --dev",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="built-in defaults, no config file: state in var/dev, the demo upstream",
    )
    serve.add_argument(
        "--host", default=None, help=f"address to listen on (dev default: {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"TCP port to listen on (dev default: {DEFAULT_PORT})",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="server processes sharing the port, each a whole gateway on the one "
        "database (default: server.processes, else 1; about one per CPU core the "
        "gateway has to itself: docs/operations.md, Capacity). Not the executor's "
        "workers (executor.workers, loops inside each process)",
    )
    serve.add_argument(
        "--policy", type=Path, default=None, help="policy folder (dev mode; default ./policies)"
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level shown (default: info)",
    )
    serve.add_argument("--json-logs", action="store_true", help="JSON logs in dev mode too")
    serve.set_defaults(handler=cmd_serve)

    check = commands.add_parser(
        "check-config",
        help="validate a config file and compile its policy",
        description="Validates a config file and compiles its policy (for OPA: probes it). "
        "A ${VAR} not set in this environment is a warning, not an error: it is checked "
        "as written. Exit 0 valid, 1 invalid.",
    )
    check.add_argument("file", type=Path, help="the config file (YAML)")
    check.set_defaults(handler=cmd_check_config)


class PortInUse(GatewayError):
    """The address to serve on is taken (or cannot be bound at all)."""

    code = "port_in_use"


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or PortInUse saying what to do instead.

    Bound, not yet listening: the server listens on it (asyncio's create_server) only
    once the app has started, so until then a client is refused, as before, rather
    than left waiting. SO_REUSEADDR as uvicorn sets it: a restart is not refused for
    the previous process's connections in TIME_WAIT, while a port another socket
    listens on still is. (Two gateways starting at the same moment both bind; the
    second to listen then fails, after its start.)"""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)  # refused while another socket listens on the port
        return sock
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another gateway "
            "running there? stop it, or choose another port: --port N, make run PORT=N)"
        ) from None


def bind_processes(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to host:port with SO_REUSEPORT, one per server process:
    the kernel spreads new connections over them (a hash of the client's address and
    port), where processes accepting from one shared socket do not (docs/decisions/
    0035). PortInUse as `bind` says it when anything else holds the port: the group is
    bound only after a plain `bind` found the port free, so another gateway's group (or
    any other listener) is refused, never joined."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise GatewayError("--processes above 1 needs SO_REUSEPORT (Linux, BSD, macOS)")
    probe = bind(host, port)
    address = probe.getsockname()  # the port chosen, for port 0
    probe.close()  # closed: its kind and family still read
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(rebind(probe, address))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets


def rebind(like: socket.socket, address: Any = None) -> socket.socket:
    """A new SO_REUSEPORT socket of ``like``'s kind bound to its address (or
    ``address``), not yet listening: the kernel sends it no connection before its
    server process listens. OSError when the port cannot be joined."""
    sock = socket.socket(like.family, like.type, like.proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address if address is not None else like.getsockname())
    except OSError:
        sock.close()
        raise
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.logs import configure_logging

    if args.dev and args.config:
        raise GatewayError("--dev and --config exclude each other: dev mode needs no config file")
    if not args.dev and not args.config:
        raise GatewayError("give --config FILE, or --dev for a gateway with built-in defaults")
    if args.processes is not None and not 1 <= args.processes <= MAX_PROCESSES:
        raise GatewayError(f"--processes must be between 1 and {MAX_PROCESSES}")
    configure_logging(args.log_level, json_format=not args.dev or args.json_logs)
    if args.dev:
        host, port = args.host or DEFAULT_HOST, args.port or DEFAULT_PORT
        # Before dev mode writes its keys and database.
        sockets = (
            bind_processes(host, port, args.processes)
            if (args.processes or 1) > 1
            else [bind(host, port)]
        )
        return _serve_dev(args, sockets, host, port)
    config = load_config(args.config)
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("processes", args.processes))
        if v is not None
    }
    if overrides:
        config = _with_server(config, overrides)
    server = config.server
    if server.processes > 1:
        sockets = bind_processes(server.host, server.port, server.processes)
        return _supervise(args, config, sockets, on_ready=None)
    sock = bind(server.host, server.port)
    from gateway import telemetry
    from gateway.app import build_app

    with telemetry.tracing(config.tracing):  # before the app: it decides the middleware
        started = run_server(
            built(lambda: build_app(config)), sock, on_listening=_listening(sock, 1)
        )
    return 0 if started else STARTUP_FAILURE


def _with_server(config: Config, overrides: dict[str, object]) -> Config:
    """``config`` with server settings of the command line, checked as the file's are."""
    config = config.model_copy(update={"server": config.server.model_copy(update=overrides)})
    try:
        config.check_processes()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config


def _serve_dev(args: argparse.Namespace, sockets: list[socket.socket], host: str, port: int) -> int:
    from gateway.dev import banner, dev_setup
    from gateway.dev_state import record_dev_server

    setup = dev_setup(host=host, port=port, policy_path=args.policy)
    config = setup.config
    if args.processes is not None:
        # Each process has its own demo upstream (a stdio child of its own).
        config = _with_server(config, {"processes": args.processes})

    def on_listening() -> None:
        record_dev_server(config.data_dir, config.public_url)
        print(banner(setup), flush=True)

    if config.server.processes > 1:
        return _supervise(args, config, sockets, on_ready=on_listening)
    [sock] = sockets
    listening = _listening(sock, 1)

    def both() -> None:
        listening()
        on_listening()

    return 0 if run_server(_dev_app(config), sock, on_listening=both) else STARTUP_FAILURE


def _dev_app(config: Config) -> AppStart:
    """The dev gateway's app, with its demo upstream's process started first: that
    process imports its MCP SDK while this one imports and builds the gateway, where
    it used to start only after both (a restart's longest wait; docs/decisions/0037).
    The connection takes the process as it would have started it, and the process
    ends as any stdio upstream's does (gateway.upstreams.mcp_stdio)."""

    @asynccontextmanager
    async def start() -> AsyncIterator[ASGIApp]:
        from gateway.config import McpStdioUpstream
        from gateway.upstreams.mcp_stdio import started_ahead, stdio_parameters

        # Without credentials: a static secret would add to the environment
        # (CredentialProvider.stdio_env), read only when the app is built.
        ahead = [
            (u.name, stdio_parameters(u, {}))
            for u in config.upstreams
            if isinstance(u, McpStdioUpstream) and u.credentials.mode == "none"
        ]
        async with started_ahead(ahead) as starts:
            from gateway.app import build_app
            from gateway.components import build_components

            yield build_app(config, build_components(config, starts))

    return start


def _supervise(
    args: argparse.Namespace,
    config: Config,
    sockets: list[socket.socket],
    *,
    on_ready: Callable[[], None] | None,
) -> int:
    """Serves with config.server.processes processes (gateway.cli.supervisor)."""
    from gateway.cli.restarts import Restarts
    from gateway.cli.serve_process import ProcessSpec
    from gateway.cli.supervisor import Supervisor
    from gateway.clock import monotonic

    json_logs = not args.dev or args.json_logs
    supervisor = Supervisor(
        lambda index: ProcessSpec(config, index, args.log_level, json_logs, os.getpid()),
        sockets,
        drain_s=DRAIN_S,
        restarts=Restarts(config.server.restarts, monotonic),
    )
    listening = _listening(sockets[0], len(sockets))

    def ready(pids: list[int]) -> None:
        listening()
        if on_ready is not None:
            on_ready()

    return supervisor.run(ready)


def _listening(sock: socket.socket, processes: int) -> Callable[[], None]:
    import logging

    log = logging.getLogger("gateway.serve")
    host, port = sock.getsockname()[:2]
    # uvicorn logs no address for sockets it is handed: say it here.
    if processes == 1:
        return lambda: log.info("listening on http://%s:%s", host, port)
    return lambda: log.info("listening on http://%s:%s (%d processes)", host, port, processes)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.components import build_policy_engine, witness_endpoints
    from gateway.config import load_config

    # Secrets are often not in the environment where a config is checked: say which
    # are missing here rather than refuse the file.
    unset: list[str] = []
    config = load_config(args.file, unset=unset)
    for name in unset:
        print(
            f"warning: ${{{name}}} is not set here; checked as written (the gateway "
            "will not start without it)",
            file=sys.stderr,
        )
    witnesses = witness_endpoints(config)
    engine = build_policy_engine(config)
    print(f"{args.file}: ok")
    print(f"  audience   {config.audience}")
    print(f"  issuers    {', '.join(i.issuer for i in config.identity.issuers)}")
    print(f"  policy     {config.policy.engine} {_policy_state(engine)}")
    print(f"  storage    {config.storage.url.split('@')[-1]}")
    print(f"  upstreams  {', '.join(u.name for u in config.upstreams) or '(none)'}")
    if witnesses:
        print(f"  witnesses  {', '.join(w.name for w in witnesses)}")
    tracing = config.tracing
    print(f"  tracing    {tracing.traces_url if tracing.enabled else 'off'}")
    return 0


def _policy_state(engine: PolicyEngine) -> str:
    """The revision; for an OPA engine its URL and whether it answers now. An OPA that is
    down does not make the file invalid (the gateway denies until OPA is up), so that
    is a warning, not an error."""
    import anyio

    from gateway.policy.opa import OpaEngine

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
