"""`gateway audit export | verify | prove | verify-receipt`: checking the audit log.

``verify`` and ``verify-receipt`` need no gateway config: an auditor runs them on an
export directory (or a database URL) with keys obtained out of band. Exit codes:
0 clean, 1 a fault was found, 2 the input could not be read at all. On an export
directory, and on a receipt with its leaf, they import `gateway.tlog` and no database
layer (docs/decisions/0015); the database is imported only when asked for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.cli.common import add_config_option, config_from


def register_commands(audit_commands: argparse._SubParsersAction) -> None:
    export = audit_commands.add_parser(
        "export", help="write entries, payloads, checkpoints and keys to a directory"
    )
    add_config_option(export)
    export.add_argument("--out", type=Path, required=True, help="directory to write")
    export.set_defaults(handler=cmd_audit_export)

    verify = audit_commands.add_parser(
        "verify",
        help="check an export directory, a database or a consistency proof (exit 0 only when "
        "clean)",
    )
    verify.add_argument("dir", type=Path, nargs="?", help="an `audit export` directory")
    verify.add_argument("--db", help="verify this database URL instead of a directory")
    verify.add_argument(
        "--consistency",
        type=Path,
        metavar="FILE",
        help="verify a consistency proof file (`audit prove --consistency`) against "
        "--trusted-checkpoint instead of a log; needs --keys",
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="with --consistency: the newer checkpoint as you got it elsewhere; the "
        "proof's must state the same size and root",
    )
    verify.add_argument(
        "--keys", type=Path, help="public keys file (default: the log's own keys record)"
    )
    verify.add_argument(
        "--trusted-checkpoint", type=Path, help="a signed checkpoint you kept earlier"
    )
    verify.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="KEY",
        help="a witness's verifier key whose cosignature counts (repeat for several)",
    )
    verify.add_argument(
        "--min",
        type=int,
        metavar="K",
        help="how many cosignatures, by distinct --witness keys, the trusted (or latest) "
        "checkpoint must carry (default: one per --witness)",
    )
    verify.add_argument("--json", action="store_true", help="the report as JSON")
    verify.set_defaults(handler=cmd_audit_verify)

    prove = audit_commands.add_parser(
        "prove",
        help="write a receipt (tlog-proof) of one entry, or a consistency proof between "
        "two checkpoints",
    )
    add_config_option(prove)
    prove.add_argument("seq", type=int, nargs="?", help="the entry's seq (its position in the log)")
    prove.add_argument(
        "--consistency",
        type=int,
        nargs=2,
        metavar=("N", "M"),
        help="instead of a receipt: prove the checkpoint of tree size M extends the one of "
        "size N (sizes in entries)",
    )
    prove.add_argument(
        "--size",
        type=int,
        help="tree size, in entries, of the checkpoint to prove against (default: the latest)",
    )
    prove.add_argument("--out", type=Path, help="file to write (default: stdout)")
    prove.set_defaults(handler=cmd_audit_prove)

    check = audit_commands.add_parser("verify-receipt", help="check a receipt (exit 0/1)")
    add_config_option(check)
    check.add_argument("file", type=Path, help="the receipt")
    trust = check.add_mutually_exclusive_group(required=True)
    trust.add_argument("--key", help="verifier key <name>+<id>+<base64> (valid for all sizes)")
    trust.add_argument("--keys", type=Path, help="public keys file with validity ranges")
    check.add_argument(
        "--leaf", type=Path, help="the entry's leaf bytes (default: read from the database)"
    )
    check.set_defaults(handler=cmd_audit_verify_receipt)


def cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.audit.export import export_log
    from gateway.store import create_engine

    engine = create_engine(config_from(args).storage.url)
    try:
        summary = export_log(engine, args.out)
    finally:
        engine.dispose()
    print(
        f"exported {summary.entries} entries, {summary.payloads} payloads, "
        f"{summary.checkpoints} checkpoints, {summary.keys} keys to {args.out}"
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.tlog.cosignature import WitnessKey
    from gateway.tlog.keys import parse_keys
    from gateway.tlog.source import directory_source
    from gateway.tlog.verifier import verify_log

    given = [x for x in (args.dir, args.db, args.consistency) if x is not None]
    if len(given) != 1:
        print("give one of: an export directory, --db URL, --consistency FILE", file=sys.stderr)
        return 2
    try:
        keys = None if args.keys is None else parse_keys(args.keys.read_text(encoding="utf-8"))
        trusted = (
            None
            if args.trusted_checkpoint is None
            else args.trusted_checkpoint.read_text(encoding="utf-8")
        )
        witnesses = [WitnessKey.parse(text) for text in args.witness]
        minimum = len(witnesses) if args.min is None else args.min
        if witnesses and not 1 <= minimum <= len(witnesses):
            raise ValueError(f"--min must be from 1 to {len(witnesses)} (the --witness keys)")
        if args.min is not None and not witnesses:
            raise ValueError("--min counts the cosignatures of --witness keys: name them")
    except (OSError, ValueError) as exc:
        print(f"cannot read input: {exc}", file=sys.stderr)
        return 2
    if args.consistency is not None:
        return _verify_consistency(args, keys, trusted, witnesses, minimum)
    engine = None
    try:
        if args.db is not None:
            from gateway.audit.export import database_source
            from gateway.store import create_engine

            engine = create_engine(args.db)
            source = database_source(engine)
        else:
            source = directory_source(args.dir)
        report = verify_log(
            source, keys=keys, trusted=trusted, witnesses=witnesses, min_cosignatures=minimum
        )
    except (OSError, ValueError) as exc:
        print(f"cannot read the log: {exc}", file=sys.stderr)
        return 2
    finally:
        if engine is not None:
            engine.dispose()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for warning in report.warnings:
            print(f"warning: {warning}")
        for fault in report.faults:
            print(f"FAULT [{fault.code}] {fault.message}")
        for unknown in report.outcome_unknown:
            print(
                f"outcome unknown: call {unknown.ref} was allowed (entry {unknown.seq}) "
                "but its outcome is not in the log (the gateway may have stopped between "
                "forwarding it and recording the result)"
            )
        if report.witnessed:
            print(f"cosigned by witnesses: {', '.join(report.witnessed)}")
        verdict = "OK" if report.ok else f"FAILED ({len(report.faults)} faults)"
        failed = report.checkpoints_seen - report.checkpoints
        print(
            f"{verdict}: {report.size} entries, {report.checkpoints} checkpoints verified"
            + (f", {failed} failed" if failed else "")
            + f" ({report.source})"
        )
    return 0 if report.ok else 1


def _verify_consistency(
    args: argparse.Namespace,
    keys: list | None,
    trusted: str | None,
    witnesses: list,
    minimum: int,
) -> int:
    """`verify --consistency FILE`: the proof's checkpoint extends the trusted one."""
    from gateway.tlog.checkpoint import open_checkpoint
    from gateway.tlog.consistency import verify_consistency_proof
    from gateway.tlog.cosignature import verify_cosignatures
    from gateway.tlog.errors import AuditVerificationError, ForkError, ProofError

    if not keys or trusted is None:
        print(
            "--consistency needs --keys FILE (the log's public keys, from out of band) and "
            "--trusted-checkpoint FILE (the older checkpoint you kept)",
            file=sys.stderr,
        )
        return 2
    try:
        text = args.consistency.read_text(encoding="utf-8")
        theirs = None if args.checkpoint is None else args.checkpoint.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"cannot read input: {exc}", file=sys.stderr)
        return 2
    try:
        # The key name is the log's origin (architecture.md §6).
        old, new = verify_consistency_proof(text, trusted, keys=keys, origin=keys[0].name)
        if theirs is not None:
            mine, _ = open_checkpoint(theirs, keys, origin=keys[0].name)
            if mine.size != new.size:
                raise ProofError(
                    f"the proof leads to tree size {new.size}, --checkpoint is of size "
                    f"{mine.size}: ask for the proof to {mine.size}"
                )
            if mine.root != new.root:
                raise ForkError(
                    "--checkpoint",
                    mine.size,
                    f"signed root differs from the proof's checkpoint of the same size "
                    f"{mine.size}: the log showed two histories",
                )
        found = []
        if witnesses:
            note = text.partition("\n\n")[2]
            found = verify_cosignatures(note, witnesses, minimum=minimum)
    except AuditVerificationError as exc:
        print(f"INVALID [{exc.code}] {exc.message}")
        return 1
    if found:
        print(f"cosigned by witnesses: {', '.join(sorted(c.witness.name for c in found))}")
    print(
        f"OK: the checkpoint of size {new.size} extends your trusted checkpoint of size "
        f"{old.size} ({old.origin})"
    )
    return 0


def cmd_audit_prove(args: argparse.Namespace) -> int:
    from gateway.audit.receipt import receipt_for_entry
    from gateway.errors import GatewayError
    from gateway.store import create_engine

    if (args.seq is None) == (args.consistency is None):
        print("give an entry's SEQ or --consistency N M (one of them)", file=sys.stderr)
        return 2
    if args.consistency is not None:
        if args.size is not None:
            print("--size is for a receipt; --consistency names both sizes", file=sys.stderr)
            return 2
        return _prove_consistency(args)
    engine = create_engine(config_from(args).storage.url)
    try:
        text = receipt_for_entry(engine, args.seq, tree_size=args.size)
    except GatewayError as exc:
        print(f"no receipt: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(
            f"wrote a receipt of entry {args.seq} at tree size {_receipt_size(text)} to "
            f"{args.out} (check it: gateway audit verify-receipt {args.out} --keys FILE)"
        )
    return 0


def _prove_consistency(args: argparse.Namespace) -> int:
    from gateway.audit.consistency import consistency_between
    from gateway.errors import GatewayError
    from gateway.store import create_engine

    old, new = args.consistency
    engine = create_engine(config_from(args).storage.url)
    try:
        result = consistency_between(engine, old, new)
    except GatewayError as exc:
        print(f"no proof: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.out is None:
        sys.stdout.write(result.text)
    else:
        args.out.write_text(result.text, encoding="utf-8")
        print(
            f"wrote a consistency proof from tree size {old} to {new} to {args.out} (check it: "
            f"gateway audit verify --consistency {args.out} --trusted-checkpoint YOUR_{old} "
            "--keys FILE)"
        )
    return 0


def _receipt_size(text: str) -> int:
    """The tree size of the checkpoint a receipt proves the entry against."""
    from gateway.tlog.checkpoint import parse_checkpoint
    from gateway.tlog.note import parse_note
    from gateway.tlog.receipt import parse_receipt

    return parse_checkpoint(parse_note(parse_receipt(text).checkpoint).text).size


def cmd_audit_verify_receipt(args: argparse.Namespace) -> int:
    from gateway.tlog.errors import AuditVerificationError
    from gateway.tlog.keys import AuditKey, VerifierKey, parse_keys
    from gateway.tlog.receipt import parse_receipt, verify_receipt

    try:
        if args.key is not None:
            keys = [AuditKey(VerifierKey.parse(args.key), 0, None)]
        else:
            keys = parse_keys(args.keys.read_text(encoding="utf-8"))
        if not keys:
            raise ValueError("the keys file holds no key")
        receipt = parse_receipt(args.file.read_bytes())
        if args.leaf is not None:
            leaf = args.leaf.read_bytes()
        else:
            leaf = _stored_leaf(args, receipt.index)
        # The key name is the log's origin (architecture.md §6).
        checkpoint = verify_receipt(receipt, leaf, origin=keys[0].name, keys=keys)
    except (OSError, ValueError, LookupError) as exc:
        print(f"cannot check the receipt: {exc}", file=sys.stderr)
        return 1
    except AuditVerificationError as exc:
        print(f"INVALID [{exc.code}] {exc.message}")
        return 1
    print(f"OK: entry {receipt.index} is in {checkpoint.origin} at tree size {checkpoint.size}")
    return 0


def _stored_leaf(args: argparse.Namespace, seq: int) -> bytes:
    from gateway.audit.reader import read_entries
    from gateway.store import create_engine

    engine = create_engine(config_from(args).storage.url)
    try:
        entries = read_entries(engine, start=seq, stop=seq + 1)
    finally:
        engine.dispose()
    if not entries:
        raise LookupError(f"entry {seq} is not in the database")
    return entries[0].leaf
