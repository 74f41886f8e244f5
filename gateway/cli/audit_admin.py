"""`gateway audit erase | rotate-key`: the operator's changes to the audit log.

Both append an entry saying what was done (``erasure``, ``key.rotation``), so an
auditor sees every such change in the log itself (docs/audit.md). Exit codes: 0 done,
1 refused (nothing changed).
"""

from __future__ import annotations

import argparse
import sys

from gateway.cli.common import add_config_option, config_from

# gateway.audit.rotation.DEFAULT_OVERLAP, repeated so that --help need not import the
# audit layer (tests/unit/test_cli_startup.py holds the two equal).
DEFAULT_OVERLAP = 10_000


def register_commands(audit_commands: argparse._SubParsersAction) -> None:
    erase = audit_commands.add_parser(
        "erase",
        help="erase one entry's payload, or every copy of a call or a run",
        description="Erases payloads (each recorded by an erasure entry, so the log keeps "
        "verifying). SEQ erases one entry; --request and --run erase every copy the "
        "gateway holds of a call or a finished run: its audit entries, approvals and run "
        "records (docs/audit.md, 'What erasure removes').",
    )
    add_config_option(erase)
    target = erase.add_mutually_exclusive_group(required=True)
    target.add_argument("seq", type=int, nargs="?", help="seq of the entry whose payload to erase")
    target.add_argument("--request", metavar="ID", help="a call's request id (req_…)")
    target.add_argument("--run", metavar="ID", help="a finished run's id (run_…)")
    erase.add_argument(
        "--reason", required=True, help="why (kept in the log: a ticket, not personal data)"
    )
    erase.set_defaults(handler=cmd_audit_erase)

    rotate = audit_commands.add_parser(
        "rotate-key", help="replace the checkpoint signing key (old one signs during an overlap)"
    )
    add_config_option(rotate)
    # The default is resolved when the command runs: building the parser must not
    # import the database layer (`audit verify` of an export needs none).
    rotate.add_argument(
        "--overlap",
        type=int,
        help="entries during which both keys sign (default: 10000, the rotation's own)",
    )
    rotate.set_defaults(handler=cmd_audit_rotate_key)


def cmd_audit_erase(args: argparse.Namespace) -> int:
    from gateway.audit.erasure import ErasureRefused, erase_payload
    from gateway.erasure_scope import erase, scope_of_request, scope_of_run
    from gateway.store import create_engine

    config = config_from(args)
    engine = create_engine(config.storage.url)
    try:
        if args.seq is not None:
            done = erase_payload(engine, config.audit.origin, args.seq, args.reason)
            print(
                f"erased the payload of entry {done.seq} ({done.kind}); "
                f"erasure entry {done.erasure_seq}"
            )
            return 0
        if args.request is not None:
            scope = scope_of_request(engine, args.request)
        else:
            scope = scope_of_run(engine, args.run)
        report = erase(engine, config.audit.origin, scope, args.reason)
    except ErasureRefused as exc:
        print(f"not erased: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for done in report.erased:
        print(f"erased entry {done.seq} ({done.kind}); erasure entry {done.erasure_seq}")
    tables = ", ".join(f"{n} {t}" for t, n in report.rows.items() if n) or "no table rows"
    print(
        f"erased {len(report.erased)} payloads and {tables} for "
        f"{len(report.scope.requests)} requests, {len(report.scope.approvals)} approvals "
        f"and {len(report.scope.runs)} runs"
    )
    return 0


def cmd_audit_rotate_key(args: argparse.Namespace) -> int:
    from gateway.audit.rotation import DEFAULT_OVERLAP, rotate_key
    from gateway.errors import ConfigError
    from gateway.store import create_engine

    config = config_from(args)
    engine = create_engine(config.storage.url)
    try:
        done = rotate_key(
            engine,
            config.audit.origin,
            config.audit.signing_key_file,
            overlap=DEFAULT_OVERLAP if args.overlap is None else args.overlap,
        )
    except (ConfigError, ValueError) as exc:
        print(f"not rotated: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    end = done.old.valid_to_size
    print(f"old key {done.old.verifier.encode()} signs up to tree size {end}")
    print(f"  kept in {done.retained_file} until then")
    start = done.new.valid_from_size
    print(f"new key valid from tree size {start}; key.rotation entry {done.entry_seq}")
    print(f"restart every gateway process before the log reaches {end} entries")
    print("new verifier key:")
    print(done.new.verifier.encode())
    return 0
