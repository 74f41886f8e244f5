"""Finding entries and checking each one as an auditor would: the one implementation
behind `gateway audit search` and the audit explorer (``GET /v1/audit/entries``).

An entry is checked against the latest stored checkpoint, read once per search so
every entry of one answer is judged against the same tree:

1. its stored leaf bytes hash to its stored leaf hash, parse as a version-1 leaf of
   this log, and agree with the indexed copies (seq, ts, kind, ref) the filters use;
2. its payload matches the leaf's commitment, or is absent and a later ``erasure``
   entry names it;
3. if the checkpoint covers it: its receipt (C2SP tlog-proof: inclusion proof plus
   the signed checkpoint) verifies for its leaf bytes with the registered keys, the
   way `gateway audit verify-receipt` checks it.

A failure is a `CheckedEntry` with status ``failed`` and the reason, not an exception:
a search shows every entry it found, the damaged ones marked. The keys and the
checkpoint come from the database being checked, so "verified" here is a
convenience for operators; independent assurance needs the offline checks against
keys and checkpoints held elsewhere (docs/audit.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Engine

from gateway.audit.keys import read_keys
from gateway.audit.reader import read_entries, tail
from gateway.audit.receipt import receipt_for_entry
from gateway.audit.stored_checkpoints import StoredCheckpoint, latest_checkpoint
from gateway.errors import BadRequest
from gateway.tlog.chain import ERASURE_KIND
from gateway.tlog.entries import AuditEntry
from gateway.tlog.errors import (
    AuditEntryNotFound,
    AuditVerificationError,
    ChainError,
    ProofUnavailable,
)
from gateway.tlog.keys import AuditKey
from gateway.tlog.leaf import commitment_of_jcs, format_ts, leaf_hash, parse_leaf
from gateway.tlog.receipt import parse_receipt, verify_receipt


class Verification(StrEnum):
    """What checking an entry found."""

    VERIFIED = "verified"  # intact and included in the checkpoint it was checked against
    PENDING = "pending"  # intact so far, but no checkpoint covers it yet
    FAILED = "failed"  # something does not match: see the reason


class PayloadState(StrEnum):
    PRESENT = "present"
    ERASED = "erased"  # deleted on request; a later erasure entry names it
    MISSING = "missing"  # gone without an erasure entry: a failure


@dataclass(frozen=True)
class SearchQuery:
    """Filters of a search; every given one must match. ``since`` and ``until`` are leaf
    timestamps (see `leaf_time`), both inclusive; ``principal`` and ``tool`` match the
    values stored beside payloads (so never an erased entry); ``before`` keeps entries
    with a smaller seq (the cursor of the next page)."""

    since: str | None = None
    until: str | None = None
    principal: str | None = None
    tool: str | None = None
    kind: str | None = None
    ref: str | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof of leaf ``leaf_index`` in the tree of ``tree_size``
    whose root is ``root``, and the same as a receipt (C2SP tlog-proof) text."""

    leaf_index: int
    tree_size: int
    root: bytes
    hashes: tuple[bytes, ...]
    receipt: str


@dataclass(frozen=True)
class CheckedEntry:
    """An entry and what checking it found. ``proof`` is there whenever one could be
    built (also for some failures: it is the evidence); ``checkpoint`` is the one the
    entry was checked against (None when there is none yet)."""

    entry: AuditEntry
    status: Verification
    reason: str | None
    code: str | None
    payload_state: PayloadState
    erasure_seq: int | None
    proof: InclusionProof | None
    checkpoint: StoredCheckpoint | None

    def summary(self) -> str:
        """One line for people: what the CLI prints in brackets."""
        if self.status is Verification.VERIFIED and self.proof is not None:
            return f"included in checkpoint {self.proof.tree_size}, verified"
        if self.status is Verification.PENDING:
            return "not yet in a checkpoint"
        return f"FAILED: {self.reason}"


@dataclass(frozen=True)
class SearchResult:
    """Matching entries, newest first; ``next_before`` continues with older ones (None
    when there are no more)."""

    entries: list[CheckedEntry]
    checkpoint: StoredCheckpoint | None
    next_before: int | None


def leaf_time(text: str, name: str) -> str:
    """An RFC 3339 time as a leaf timestamp (UTC, milliseconds), for the ``since`` and
    ``until`` filters; without an offset it is taken as UTC. Raises BadRequest naming
    ``name`` (the option or parameter the text came from)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if not 1970 <= moment.astimezone(UTC).year <= 9999:
            raise ValueError("out of range")
        return format_ts(moment)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name} {text!r} is not an RFC 3339 time from 1970 on (e.g. 2026-11-21T10:00:00Z)"
        ) from None


class EntryChecker:
    """Checks entries against one checkpoint and one set of keys, read once: the
    latest checkpoint and the registered keys at construction."""

    def __init__(self, engine: Engine, origin: str) -> None:
        self._engine = engine
        self._origin = origin
        self._keys: list[AuditKey] = read_keys(engine)
        self.checkpoint: StoredCheckpoint | None = latest_checkpoint(engine)

    def check(self, entry: AuditEntry) -> CheckedEntry:
        erasure_seq = None if entry.payload_jcs is not None else self._erasure_of(entry.seq)
        if entry.payload_jcs is not None:
            state = PayloadState.PRESENT
        else:
            state = PayloadState.MISSING if erasure_seq is None else PayloadState.ERASED
        proof = None
        try:
            self._check_leaf(entry)
            self._check_payload(entry, erasure_seq)
            checkpoint = self.checkpoint
            if checkpoint is None or entry.seq >= checkpoint.size:
                where = (
                    "no checkpoint yet"
                    if checkpoint is None
                    else f"the latest checkpoint covers {checkpoint.size} entries"
                )
                status, reason, code = (
                    Verification.PENDING,
                    f"not yet in a checkpoint ({where})",
                    None,
                )
            else:
                proof = self._build_proof(entry, checkpoint)
                verify_receipt(proof.receipt, entry.leaf, origin=self._origin, keys=self._keys)
                status, reason, code = Verification.VERIFIED, None, None
        except (AuditVerificationError, ProofUnavailable) as exc:
            # The proof is kept when there is one: it is what an auditor re-checks.
            status, reason, code = Verification.FAILED, exc.message, exc.code
        return CheckedEntry(entry, status, reason, code, state, erasure_seq, proof, self.checkpoint)

    def _check_leaf(self, entry: AuditEntry) -> None:
        """The leaf bytes are the truth; the stored hash and the indexed copies the
        filters use must agree with them. Raises ChainError."""
        if leaf_hash(entry.leaf) != entry.leaf_hash:
            raise ChainError(entry.seq, "the stored leaf bytes do not hash to the stored leaf hash")
        fields = parse_leaf(entry.leaf)  # LeafFormatError
        if fields.log != self._origin:
            raise ChainError(entry.seq, f"the leaf is of log {fields.log!r}, not {self._origin!r}")
        indexed = {"seq": entry.seq, "ts": entry.ts, "kind": entry.kind, "ref": entry.ref}
        for name, value in indexed.items():
            if getattr(fields, name) != value:
                raise ChainError(
                    entry.seq,
                    f"the indexed {name} {value!r} differs from the leaf's "
                    f"{getattr(fields, name)!r}",
                )

    def _check_payload(self, entry: AuditEntry, erasure_seq: int | None) -> None:
        """The payload matches the leaf's commitment, or is missing and erasure entry
        ``erasure_seq`` names it. Raises ChainError."""
        if entry.payload_jcs is None:
            if erasure_seq is None:
                raise ChainError(entry.seq, "the payload is missing and no erasure entry names it")
            return
        # Over the stored bytes, as the offline verifier does: nothing is re-serialized.
        commitment = parse_leaf(entry.leaf).commitment
        if entry.salt is None or _commitment(entry.salt, entry.payload_jcs) != commitment:
            raise ChainError(entry.seq, "the payload does not match the leaf's commitment")
        if entry.payload is None:
            raise ChainError(entry.seq, "the stored payload is not a JSON object")

    def _erasure_of(self, seq: int) -> int | None:
        """The seq of the erasure entry naming entry ``seq``, or None. Its payload's
        ``seq`` is what counts, as for the offline verifier (`gateway.tlog.chain`)."""
        for erasure in read_entries(self._engine, kind=ERASURE_KIND, ref=f"erasure:{seq}"):
            if erasure.seq > seq and (erasure.payload or {}).get("seq") == seq:
                return erasure.seq
        return None

    def _build_proof(self, entry: AuditEntry, checkpoint: StoredCheckpoint) -> InclusionProof:
        """The entry's receipt against ``checkpoint``, from the tree store. Raises
        ProofError (the stored tree does not lead to the checkpoint's root) or
        ProofUnavailable (the tree store lacks nodes of a checkpointed size)."""
        receipt = receipt_for_entry(self._engine, entry.seq, tree_size=checkpoint.size)
        hashes = parse_receipt(receipt).proof
        return InclusionProof(entry.seq, checkpoint.size, checkpoint.root, hashes, receipt)


def _commitment(salt: bytes, payload_jcs: bytes) -> bytes | None:
    try:
        return commitment_of_jcs(salt, payload_jcs)
    except ValueError:  # a salt of the wrong size: damage, reported as a mismatch
        return None


def search(engine: Engine, origin: str, query: SearchQuery) -> SearchResult:
    """The newest ``query.limit`` entries matching ``query``, each checked."""
    if query.limit <= 0:
        return SearchResult([], latest_checkpoint(engine), None)
    checker = EntryChecker(engine, origin)
    found = tail(
        engine,
        query.limit + 1,  # one more than asked: is there a next page?
        kind=query.kind,
        ref=query.ref,
        subject=query.principal,
        tool=query.tool,
        since=query.since,
        until=query.until,
        before=query.before,
    )
    found.reverse()  # newest first
    page = found[: query.limit]
    next_before = page[-1].seq if len(found) > query.limit else None
    return SearchResult([checker.check(e) for e in page], checker.checkpoint, next_before)


def check_entry(engine: Engine, origin: str, seq: int) -> CheckedEntry:
    """Entry ``seq``, checked. Raises AuditEntryNotFound."""
    entries = read_entries(engine, start=seq, stop=seq + 1)
    if not entries:
        raise AuditEntryNotFound(f"no audit entry {seq}")
    return EntryChecker(engine, origin).check(entries[0])
