"""`gateway policy replay`: recorded decisions against a candidate policy.

Exit status: 0, or 1 when a difference matches ``--fail-on`` (or the audit log cannot
be read), 2 for usage errors, including a candidate policy that does not compile.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import add_config_option, config_from

if TYPE_CHECKING:
    from gateway.policy.replay import ReplayedCall, ReplayReport

EXIT_DIFFERENCES = 1
EXIT_USAGE = 2

LABELS = {
    "unchanged": "unchanged",
    "deny_to_allow": "deny → allow",
    "allow_to_deny": "allow → deny",
    "approval_added": "approval added",
    "approval_dropped": "approval dropped",
    "details_changed": "reasons/rule changed only",
}


def register(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay",
        help="re-evaluate recorded decisions against a candidate policy",
        description=(
            "Re-evaluates the decision inputs recorded in the audit log (redacted where "
            "they were redacted) with the policy in --policy, and prints what would "
            "change: deny → allow, allow → deny, approval added or dropped."
        ),
    )
    replay.add_argument("--policy", type=Path, required=True, help="candidate policy folder")
    add_config_option(replay)
    replay.add_argument("--since", type=_timestamp, help="RFC 3339; entries at or after it")
    replay.add_argument("--until", type=_timestamp, help="RFC 3339; entries before it")
    replay.add_argument(
        "--fail-on",
        choices=["allow", "deny", "any"],
        help=(
            "exit 1 when a difference allows more (allow: deny → allow, approval dropped), "
            "less (deny: allow → deny, approval added), or either (any)"
        ),
    )
    replay.add_argument("--json", action="store_true", help="one JSON document")
    replay.add_argument("--limit", type=_positive, help="replay at most N decisions")
    replay.set_defaults(handler=cmd_policy_replay)


def _timestamp(text: str) -> datetime:
    from gateway.policy.replay import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {exc}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def cmd_policy_replay(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from gateway.config import EmbeddedPolicyConfig
    from gateway.errors import PolicyLoadError, StorageError
    from gateway.policy.embedded import folder_engine
    from gateway.policy.replay import replay
    from gateway.store import create_engine

    if args.since and args.until and args.since >= args.until:
        print("gateway: error: --since must be before --until", file=sys.stderr)
        return EXIT_USAGE
    config = config_from(args)
    # The candidate gets the same config data (and limits) as the policy in production.
    settings = (
        config.policy if isinstance(config.policy, EmbeddedPolicyConfig) else EmbeddedPolicyConfig()
    )
    try:
        engine = folder_engine(settings, Path(args.policy))
    except PolicyLoadError as exc:
        print(f"gateway: error: candidate policy: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    database = create_engine(config.storage.url)
    try:
        report = replay(database, engine, since=args.since, until=args.until, limit=args.limit)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the audit log at {config.storage.url.split('@')[-1]}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        database.dispose()

    failures = report.failures(args.fail_on)
    if args.json:
        document = report.to_dict()
        document["fail_on"] = args.fail_on
        document["failed"] = bool(failures)
        print(json.dumps(document, indent=2))
    else:
        _print_text(report, failures, args.fail_on)
    return EXIT_DIFFERENCES if failures else 0


def _print_text(report: ReplayReport, failures: list[ReplayedCall], fail_on: str | None) -> None:
    print(f"candidate policy  {report.policy_path} ({report.revision})")
    window = f"{report.since or 'the beginning'} … {report.until or 'now'}"
    print(f"window            {window}")
    recorded = ", ".join(f"{rev} ({n})" for rev, n in report.revisions.most_common())
    print(f"recorded under    {recorded or '(nothing replayed)'}")
    print()
    print(f"{'replayed decisions':<28}{report.replayed:>6}")
    for change, label in LABELS.items():
        print(f"  {label:<26}{report.counts.get(change, 0):>6}")
    skipped = report.to_dict()["skipped"]
    print(f"{'skipped':<28}{sum(skipped.values()):>6}")
    print(f"  {'refused before policy':<26}{skipped['pre_policy']:>6}")
    print(f"  {'arguments withheld':<26}{skipped['withheld']:>6}")
    print(f"  {'no recorded input':<26}{skipped['no_input']:>6}")
    print(f"  {'payload erased':<26}{skipped['erased']:>6}")
    if report.redacted_inputs:
        print(
            f"note: {report.redacted_inputs} replayed inputs had values redacted; they were "
            "evaluated with the redaction marker"
        )
    if report.differences:
        print()
        print("differences:")
    for call in report.differences:
        print(
            f"  #{call.seq:<7} {call.ts}  {call.request_id}  {call.principal}  {call.tool}  "
            f"{LABELS[call.change]}"
        )
        print(
            f"           {_state(call.old)} → {_state(call.new)}; rule {call.old['rule']} → "
            f"{call.new['rule']}; reasons: {'; '.join(call.new['reasons']) or '-'}"
        )
    if fail_on:
        verdict = f"{len(failures)} differences match --fail-on {fail_on}"
        print()
        print(verdict if failures else f"no differences match --fail-on {fail_on}")


def _state(decision: dict[str, Any]) -> str:
    if not decision.get("allow"):
        return "deny"
    return "allow (approval)" if decision.get("require_approval") else "allow"
