"""`gateway audit erase | rotate-key`: the operator's changes to the audit log.

Both append an entry saying what was done (``erasure``, ``key.rotation``), so an
auditor sees every such change in the log itself (docs/audit.md). Exit codes: 0 done,
1 refused (nothing changed).
"""

from __future__ import annotations

import argparse
import sys

from gateway.cli.common import add_config_option, config_from


def register_commands(audit_commands: argparse._SubParsersAction) -> None:
    erase = audit_commands.add_parser(
        "erase", help="delete one entry's payload and record an erasure entry"
    )
    add_config_option(erase)
    erase.add_argument("seq", type=int, help="the entry whose payload to erase")
    erase.add_argument(
        "--reason", required=True, help="why (kept in the log: a ticket, not personal data)"
    )
    erase.set_defaults(handler=cmd_audit_erase)

    from gateway.audit.rotation import DEFAULT_OVERLAP

    rotate = audit_commands.add_parser(
        "rotate-key", help="replace the checkpoint signing key (old one signs during an overlap)"
    )
    add_config_option(rotate)
    rotate.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        help=f"entries during which both keys sign (default {DEFAULT_OVERLAP})",
    )
    rotate.set_defaults(handler=cmd_audit_rotate_key)


def cmd_audit_erase(args: argparse.Namespace) -> int:
    from gateway.audit.erasure import ErasureRefused, erase_payload
    from gateway.store import create_engine

    config = config_from(args)
    engine = create_engine(config.storage.url)
    try:
        done = erase_payload(engine, config.audit.origin, args.seq, args.reason)
    except ErasureRefused as exc:
        print(f"not erased: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"erased the payload of entry {done.seq} ({done.kind}); erasure entry {done.erasure_seq}")
    return 0


def cmd_audit_rotate_key(args: argparse.Namespace) -> int:
    from gateway.audit.rotation import rotate_key
    from gateway.errors import ConfigError
    from gateway.store import create_engine

    config = config_from(args)
    engine = create_engine(config.storage.url)
    try:
        done = rotate_key(
            engine, config.audit.origin, config.audit.signing_key_file, overlap=args.overlap
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
