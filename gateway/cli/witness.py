"""`gateway witness keygen | serve`: run a small C2SP tlog-witness.

A witness is run by someone other than the gateway's operator (docs/audit.md,
"Witnesses"): it needs no gateway config and no gateway database, only its own key,
its own state file and the verifier keys of the logs it follows. Exit codes: 0 done,
1 refused (an existing key file, an unreadable key).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_PORT = 8090


def register(commands: argparse._SubParsersAction) -> None:
    witness = commands.add_parser("witness", help="run a transparency-log witness (tlog-witness)")
    witness_commands = witness.add_subparsers(
        dest="witness_command", required=True, metavar="COMMAND"
    )

    keygen = witness_commands.add_parser(
        "keygen",
        help="make a witness's Ed25519 key and print its verifier key",
        description="Writes a new Ed25519 private key (PKCS#8 PEM, mode 0600) and prints "
        "the witness's cosignature verifier key, <name>+<key id>+<base64(0x04 ‖ key)>, "
        "for the gateway's audit.witnesses and for auditors. Never replaces a file.",
    )
    keygen.add_argument(
        "--name", required=True, help="the witness's name, e.g. witness.example.com/w1"
    )
    keygen.add_argument("--key", type=Path, required=True, help="private key file to create")
    keygen.set_defaults(handler=cmd_witness_keygen)

    serve = witness_commands.add_parser(
        "serve",
        help="answer add-checkpoint requests, cosigning only consistent checkpoints",
        description="Serves POST /add-checkpoint (C2SP tlog-witness) for the logs named "
        "by --log. Keeps each log's latest cosigned size and root in --state (SQLite) "
        "and refuses a checkpoint inconsistent with it.",
    )
    serve.add_argument("--name", required=True, help="the witness's name (as at keygen)")
    serve.add_argument("--key", type=Path, required=True, help="the witness's private key")
    serve.add_argument("--state", type=Path, required=True, help="state file (SQLite)")
    serve.add_argument(
        "--log",
        action="append",
        required=True,
        metavar="VKEY",
        help="a log's verifier key <origin>+<key id>+<base64>; repeat for more logs or keys",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level shown (default: info)",
    )
    serve.set_defaults(handler=cmd_witness_serve)


def cmd_witness_keygen(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError
    from gateway.witness.keys import generate_witness_key

    try:
        signer = generate_witness_key(args.key, args.name)
    except ConfigError as exc:
        print(f"no key made: {exc.message}", file=sys.stderr)
        return 1
    print(f"wrote the witness key to {args.key}; its verifier key:")
    print(signer.verifier.encode())
    return 0


def cmd_witness_serve(args: argparse.Namespace) -> int:
    import logging

    from gateway.cli.serve import bind
    from gateway.cli.serve_process import STARTUP_FAILURE, built, run_server
    from gateway.errors import ConfigError
    from gateway.logs import configure_logging
    from gateway.tlog.keys import VerifierKey
    from gateway.witness.keys import load_witness_key
    from gateway.witness.server import WitnessConfig, build_witness_app, logs_from_keys
    from gateway.witness.state import WitnessState

    configure_logging(args.log_level, json_format=True)
    try:
        keys = [VerifierKey.parse(text) for text in args.log]
    except ValueError as exc:
        raise ConfigError(f"--log: {exc}") from None
    signer = load_witness_key(args.key, args.name)
    sock = bind(args.host, args.port)
    state = WitnessState(args.state)
    logs = logs_from_keys(keys)
    log = logging.getLogger("gateway.witness")
    log.info("witness %s following %s", signer.verifier.encode(), ", ".join(sorted(logs)))
    host, port = sock.getsockname()[:2]
    started = run_server(
        built(lambda: build_witness_app(WitnessConfig(signer, state, logs))),
        sock,
        on_listening=lambda: log.info("listening on http://%s:%s", host, port),
    )
    return 0 if started else STARTUP_FAILURE
