"""The offline verifier (architecture.md §6): every check an auditor runs on a whole log.

`verify_log` reads a `LogSource` (an export directory or a database) once, in seq
order, and returns a `VerificationReport` listing the faults found, each a typed
`AuditVerificationError` naming the entry (``seq``) or checkpoint at fault:

- chain (`ChainError`, first fault only: everything after it is suspect): seq
  contiguity, ``prev`` links, canonical leaf bytes, stored hashes, payload
  commitments or a matching ``erasure`` entry (`verify_chain_rows`);
- checkpoints (`CheckpointError`): each parses and is signed by a key valid for its
  size (a signature by a key outside its range does not count); its root equals
  the root recomputed from the leaves. Two checkpoints whose roots both match the
  leaves are consistent by construction (one leaf sequence), so consistency between
  checkpoints needs no proof here; a mismatch is reported at the checkpoint;
- forks (`ForkError`): two validly signed checkpoints of one size, different roots;
- truncation (`TruncationError`): a validly signed checkpoint (stored, or the
  auditor's ``trusted`` one) larger than the log;
- call trace (`CallTraceError`): every ``call.outcome`` has a ``call.decision`` of
  its ref that allowed it, and one naming an ``approval_id`` has an approving
  ``approval.decision`` of that id; an allowed call is finished by its
  ``call.outcome`` or by a ``call.limited`` (refused by a limit, not forwarded), and
  is otherwise reported as outcome unknown. An outcome that says
  ``"forwarded": false`` (written when the COMMIT of the call's attempt and decision
  was cut off) finishes its call like a ``call.limited`` and needs no decision;
- witnesses (`WitnessQuorumError`), when the auditor names some: the trusted
  checkpoint, or else the largest valid one, carries valid cosignatures
  (C2SP tlog-cosignature) of at least ``min_cosignatures`` of them.

One pass, O(log n) memory for the tree plus the call-trace indexes: roots are taken
from a compact range at each checkpointed size as the leaves stream past.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.canonical import parse_json
from gateway.tlog.chain import verify_chain_rows
from gateway.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from gateway.tlog.cosignature import WitnessKey, verify_cosignatures
from gateway.tlog.entries import ChainRow
from gateway.tlog.errors import (
    AuditVerificationError,
    CallTraceError,
    ChainError,
    CheckpointError,
    CheckpointFormatError,
    ForkError,
    NoteError,
    TruncationError,
    WitnessQuorumError,
)
from gateway.tlog.keys import AuditKey
from gateway.tlog.merkle import EMPTY_ROOT, NODE_HASH_PREFIX, fold_right
from gateway.tlog.note import parse_note
from gateway.tlog.source import LogSource

TRUSTED_LABEL = "trusted checkpoint"
# Only these kinds' payloads are parsed (for the call-trace rules); the rest stream
# through as bytes.
_TRACE_KINDS = frozenset({"call.decision", "call.outcome", "call.limited", "approval.decision"})


@dataclass
class VerificationReport:
    """The outcome of `verify_log`: clean when ``faults`` is empty."""

    source: str
    origin: str | None
    size: int = 0
    # Checkpoints whose signature, size and root all check out; a checkpoint that
    # fails any of them is a fault and never counted here.
    checkpoints: int = 0
    checkpoints_seen: int = 0
    faults: list[AuditVerificationError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Calls a decision allowed outright whose outcome is not in the log: the outcome
    # is queued, not awaited (docs/decisions/0005), so a process that died between
    # forwarding and that commit leaves the call's result unknown. Not a fault: the
    # call may or may not have reached the upstream.
    outcome_unknown: list[OutcomeUnknown] = field(default_factory=list)
    # The named witnesses whose cosignatures on the relied-on checkpoint verified.
    witnessed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.faults

    def raise_first(self) -> None:
        """Raises the first fault, if any (for callers that want an exception)."""
        if self.faults:
            raise self.faults[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "origin": self.origin,
            "size": self.size,
            "checkpoints_verified": self.checkpoints,
            "checkpoints_failed": self.checkpoints_seen - self.checkpoints,
            "faults": [{"code": f.code, "message": f.message, **f.details} for f in self.faults],
            "warnings": self.warnings,
            "outcome_unknown": [{"seq": u.seq, "ref": u.ref} for u in self.outcome_unknown],
            "witnessed_by": self.witnessed,
        }


@dataclass(frozen=True)
class OutcomeUnknown:
    """A ``call.decision`` (at ``seq``) that allowed call ``ref`` outright, with no
    ``call.outcome`` of that ref in the log."""

    seq: int
    ref: str


@dataclass
class _Trace:
    """What the call-trace rules need, gathered during the pass."""

    allowed: dict[str, bool] = field(default_factory=dict)  # decision ref -> allows
    approved: set[str] = field(default_factory=set)  # approval ids approved
    outcomes: list[tuple[int, str, str | None]] = field(default_factory=list)
    # Decisions that allowed a call without approval: ref -> seq of the decision.
    outright: dict[str, int] = field(default_factory=dict)
    # Refs known not to have run: refused by a limit, or an outcome "not forwarded".
    limited: set[str] = field(default_factory=set)

    def add(self, seq: int, kind: str, ref: str, payload_jcs: bytes | None) -> None:
        payload = _payload(payload_jcs)
        if kind == "call.decision":
            decision = payload.get("decision") if payload is not None else None
            # An erased decision still proves one was recorded; what it said is gone,
            # so it cannot be held against the outcome.
            allows = payload is None or (
                isinstance(decision, dict)
                and (decision.get("allow") is True or decision.get("require_approval") is True)
            )
            self.allowed[ref] = self.allowed.get(ref, False) or allows
            if (
                isinstance(decision, dict)
                and decision.get("allow") is True
                and decision.get("require_approval") is not True
            ):
                self.outright.setdefault(ref, seq)
        elif kind == "approval.decision":
            if payload is None or payload.get("status") == "approved":
                self.approved.add(ref)
        elif kind == "call.limited":
            # Allowed, then refused by a limit before it was forwarded: its outcome is
            # known (it did not run), like a call.outcome's.
            self.limited.add(ref)
        elif payload is not None and payload.get("forwarded") is False:
            # A call.outcome saying the call was not forwarded (the COMMIT of its attempt
            # and decision was cut off, so the database may not have kept them): known
            # not to have run, like a call.limited, and it needs no decision to stand.
            self.limited.add(ref)
        else:  # call.outcome
            approval = payload.get("approval_id") if payload is not None else None
            self.outcomes.append((seq, ref, approval if isinstance(approval, str) else None))

    def outcome_unknown(self) -> list[OutcomeUnknown]:
        finished = {ref for _, ref, _ in self.outcomes} | self.limited
        return [
            OutcomeUnknown(seq, ref) for ref, seq in self.outright.items() if ref not in finished
        ]

    def first_fault(self) -> CallTraceError | None:
        for seq, ref, approval in self.outcomes:
            if ref not in self.allowed:
                return CallTraceError(seq, f"call.outcome of {ref!r} has no call.decision")
            if not self.allowed[ref]:
                return CallTraceError(seq, f"call.outcome of {ref!r} but its decision denied it")
            if approval is not None and approval not in self.approved:
                return CallTraceError(
                    seq, f"call.outcome of {ref!r} names approval {approval!r}, never approved"
                )
        return None


def verify_log(
    source: LogSource,
    *,
    keys: Sequence[AuditKey] | None = None,
    trusted: str | None = None,
    witnesses: Sequence[WitnessKey] = (),
    min_cosignatures: int = 1,
) -> VerificationReport:
    """Runs every check on ``source``. ``keys`` are the auditor's public keys with
    their validity (default: the source's own record, which proves less: whoever can
    rewrite the log may rewrite that too). ``trusted`` is a signed checkpoint the
    auditor kept from an earlier look. With ``witnesses``, that checkpoint (or, without
    one, the largest valid checkpoint of the source) must carry valid cosignatures of
    at least ``min_cosignatures`` of them."""
    keys = list(source.keys if keys is None else keys)
    origin = _origin(source, trusted)
    report = VerificationReport(source.describe, origin)
    if origin is None:
        report.warnings.append("the log is empty and no checkpoint names its origin")
        return report
    if not keys:
        report.warnings.append("no public keys: no checkpoint signature can be verified")

    valid: list[tuple[str, Checkpoint]] = []
    labelled = list(source.checkpoints)
    if trusted is not None:
        labelled.append((TRUSTED_LABEL, trusted))
    for label, note in labelled:
        checkpoint = _open(label, note, keys, origin, report)
        if checkpoint is not None:
            valid.append((label, checkpoint))
    report.checkpoints_seen = len(labelled)
    if not source.checkpoints:
        report.warnings.append("no checkpoints: roots and truncation cannot be checked")

    by_size: dict[int, tuple[str, bytes]] = {}
    for label, checkpoint in valid:
        seen = by_size.setdefault(checkpoint.size, (label, checkpoint.root))
        if seen[1] != checkpoint.root:
            report.faults.append(
                ForkError(
                    label,
                    checkpoint.size,
                    f"signed root differs from {seen[0]} of the same size {checkpoint.size}: "
                    "the log showed two histories",
                )
            )

    trace = _Trace()
    roots: dict[int, bytes] = {0: EMPTY_ROOT}
    counter = [0]
    rows = _tap(source.rows(), set(by_size), roots, trace, counter)
    try:
        verify_chain_rows(rows, origin)
    except ChainError as exc:
        report.faults.append(_explained(exc))
        for _ in rows:  # keep hashing: the checkpoints' roots are still worth checking
            pass
    report.size = counter[0]

    report.checkpoints = sum(
        _check_root(label, checkpoint, report, roots) for label, checkpoint in valid
    )
    if witnesses:
        _check_witnessed(labelled, valid, witnesses, min_cosignatures, report)
    if any(isinstance(f, ChainError) for f in report.faults):
        # Entries past a broken chain are not the log's: rules over them would only
        # echo the chain fault.
        report.warnings.append("call trace not checked: the chain is broken")
    else:
        if (fault := trace.first_fault()) is not None:
            report.faults.append(fault)
        report.outcome_unknown = trace.outcome_unknown()
    return report


def _tap(
    rows: Iterator[ChainRow],
    sizes: set[int],
    roots: dict[int, bytes],
    trace: _Trace,
    counter: list[int],
) -> Iterator[ChainRow]:
    """Passes the rows through to the chain check while folding their stored leaf
    hashes into a compact range (verify_chain_rows checks those equal the leaf
    bytes' hashes), noting the root at every checkpointed size, and the payloads the
    call-trace rules need. Inlined carry loop: this runs once per entry."""
    stack: list[bytes] = []
    size = 0
    sha256 = hashlib.sha256
    try:
        for row in rows:
            current = row.leaf_hash
            carry = size
            while carry & 1:
                current = sha256(NODE_HASH_PREFIX + stack.pop() + current).digest()
                carry >>= 1
            stack.append(current)
            size += 1
            counter[0] = size
            if size in sizes:
                roots[size] = fold_right(stack)
            if row.kind in _TRACE_KINDS:
                trace.add(row.seq, row.kind, row.ref, row.payload_jcs)
            yield row
    except ChainError as exc:
        # A malformed export line: report it as the chain fault at its position.
        raise ChainError(size if exc.seq is None else exc.seq, exc.reason) from None


def _open(
    label: str, note: str, keys: Sequence[AuditKey], origin: str, report: VerificationReport
) -> Checkpoint | None:
    try:
        checkpoint, _ = open_checkpoint(note, keys, origin=origin)
    except (NoteError, CheckpointFormatError) as exc:
        size = exc.details.get("tree_size")
        report.faults.append(CheckpointError(label, size, exc.message))
        return None
    return checkpoint


def _check_root(
    label: str, checkpoint: Checkpoint, report: VerificationReport, roots: dict[int, bytes]
) -> bool:
    """Whether the leaves have the checkpoint's root at its size (else a fault)."""
    size = checkpoint.size
    if size > report.size:
        report.faults.append(
            TruncationError(
                label,
                size,
                f"signed for {size} entries but the log has {report.size}: "
                f"entries from seq {report.size} on were removed",
            )
        )
        return False
    if roots.get(size) != checkpoint.root:
        what = (
            "the log was rewritten since the auditor's checkpoint"
            if label == TRUSTED_LABEL
            else "the leaves do not have the signed root"
        )
        report.faults.append(CheckpointError(label, size, f"root mismatch at size {size}: {what}"))
        return False
    return True


def _check_witnessed(
    labelled: Sequence[tuple[str, str]],
    valid: Sequence[tuple[str, Checkpoint]],
    witnesses: Sequence[WitnessKey],
    minimum: int,
    report: VerificationReport,
) -> None:
    """The quorum check on the checkpoint the auditor relies on: the trusted one if
    given, else the largest that verified."""
    notes = dict(labelled)
    chosen = next((c for c in valid if c[0] == TRUSTED_LABEL), None)
    if chosen is None and valid:
        chosen = max(valid, key=lambda c: c[1].size)
    if chosen is None:
        report.faults.append(
            WitnessQuorumError(
                "checkpoints", None, "no valid checkpoint to require cosignatures on"
            )
        )
        return
    label, checkpoint = chosen
    try:
        found = verify_cosignatures(notes[label], witnesses, minimum=minimum)
    except NoteError as exc:
        report.faults.append(WitnessQuorumError(label, checkpoint.size, exc.message))
        return
    report.witnessed = sorted(c.witness.name for c in found)


def _explained(exc: ChainError) -> ChainError:
    # A prev mismatch at seq N means entry N-1's bytes changed after N was appended
    # (or N does not belong after it): name both rather than leave the auditor
    # guessing which.
    if exc.seq and exc.reason.startswith("prev does not match"):
        return ChainError(
            exc.seq,
            f"{exc.reason} (entry {exc.seq - 1} was altered, or entry {exc.seq} does not "
            "belong after it)",
        )
    return exc


def _origin(source: LogSource, trusted: str | None) -> str | None:
    # The auditor's own checkpoint is the authority on which log this is; then the
    # first leaf, then any stored checkpoint (a log whose entries are all gone).
    if trusted is not None and (origin := _note_origin(trusted)) is not None:
        return origin
    if source.origin is not None:
        return source.origin
    for _, note in source.checkpoints:
        if (origin := _note_origin(note)) is not None:
            return origin
    return None


def _note_origin(note: str) -> str | None:
    try:
        return parse_checkpoint(parse_note(note).text).origin
    except (NoteError, CheckpointFormatError):
        return None


def _payload(payload_jcs: bytes | None) -> dict[str, Any] | None:
    if payload_jcs is None:
        return None
    try:
        payload = parse_json(payload_jcs)
    except (ValueError, RecursionError):
        return None  # the chain check reports a payload that fails its commitment
    return payload if isinstance(payload, dict) else None
