"""The audit explorer's REST API: entries by filter, and one entry with its proof.

    GET /v1/audit/entries        ?since=&until=&principal=&tool=&kind=&ref=&limit=&cursor=
                                 newest first; ``next_cursor`` continues with older ones
    GET /v1/audit/entries/{seq}  the entry, its payload, its inclusion proof (and
                                 receipt) against the latest checkpoint, and whether it
                                 verified

Read-only. Every route needs a token whose roles include one of
``audit.reader_roles``: payloads hold redacted arguments and decisions, which are for
auditors. The checking is `gateway.audit.search`, the same as `gateway audit search`;
it uses the keys and checkpoints of the database it checks, so an auditor who wants
independent assurance re-checks the receipt offline (docs/audit.md).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.records import KIND_PATTERN
from gateway.audit.search import CheckedEntry, SearchQuery, check_entry, leaf_time, search
from gateway.audit.stored_checkpoints import StoredCheckpoint
from gateway.errors import BadRequest, NotAnAuditor
from gateway.surfaces.auth import principal_of
from gateway.types import Principal

ENTRIES_PATH = "/v1/audit/entries"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Longer filter values cannot match anything the gateway writes; refusing them keeps
# queries cheap and errors clear.
MAX_VALUE_LENGTH = 500
FILTERS = ("since", "until", "principal", "tool", "kind", "ref", "limit", "cursor")


class VerificationBody(BaseModel):
    status: Literal["verified", "pending", "failed"] = Field(
        description="verified: intact, and included in the checkpoint below, which a "
        "registered key signed; pending: intact so far, no checkpoint covers it yet; "
        "failed: see reason"
    )
    reason: str | None = Field(description="Why it failed or is pending")
    code: str | None = Field(description="The error code of a failure, e.g. audit_root_mismatch")


class CheckpointBody(BaseModel):
    size: int = Field(description="Tree size: the entries 0 to size-1 it covers")
    root: str = Field(description="Root hash, base64")
    ts: str = Field(description="When it was signed")
    note: str = Field(description="The signed checkpoint (C2SP tlog-checkpoint), verbatim")


class ProofBody(BaseModel):
    leaf_index: int = Field(description="The entry's seq")
    tree_size: int
    root: str = Field(description="Root hash of the checkpoint, base64")
    hashes: list[str] = Field(description="RFC 9162 inclusion proof, base64, leaf's sibling first")
    receipt: str = Field(
        description="The same as a C2SP tlog-proof, for gateway audit verify-receipt"
    )


class AuditEntrySummary(BaseModel):
    seq: int
    ts: str
    kind: str
    ref: str = Field(description="Request, run, approval or other id the entry belongs to")
    principal: str | None = Field(description="The caller's sub as indexed (null once erased)")
    tool: str | None = Field(description="Gateway tool name as indexed (null once erased)")
    payload_status: Literal["present", "erased", "missing"]
    erasure_seq: int | None = Field(description="The erasure entry naming this one")
    verification: VerificationBody
    url: str


class AuditEntryDetail(AuditEntrySummary):
    leaf: str = Field(description="The stored leaf bytes, base64: what the proof is checked for")
    leaf_hash: str = Field(description="SHA-256(0x00 ‖ leaf), hex")
    payload: dict[str, Any] | None = Field(description="null once erased")
    proof: ProofBody | None = Field(description="Against `checkpoint`; null while pending")
    checkpoint: CheckpointBody | None = Field(description="The latest checkpoint at the time")


class AuditEntryList(BaseModel):
    entries: list[AuditEntrySummary] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as cursor for older entries")
    checkpoint: CheckpointBody | None = Field(description="What the entries were checked against")


class AuditExplorer:
    def __init__(
        self,
        database: Engine,
        *,
        origin: str,
        reader_roles: list[str],
    ) -> None:
        self._database = database
        self._origin = origin
        self._roles = frozenset(reader_roles)

    def routes(self) -> list[Route]:
        return [
            Route(ENTRIES_PATH, self.list_entries, methods=["GET"]),
            Route(ENTRIES_PATH + "/{seq}", self.get_entry, methods=["GET"]),
        ]

    async def list_entries(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_reader(principal)
        query = search_query(request.query_params)
        result = await anyio.to_thread.run_sync(search, self._database, self._origin, query)
        body = AuditEntryList(
            entries=[_summary(checked) for checked in result.entries],
            next_cursor=None if result.next_before is None else str(result.next_before),
            checkpoint=_checkpoint(result.checkpoint),
        )
        return JSONResponse(body.model_dump())

    async def get_entry(self, request: Request) -> Response:
        principal = principal_of(request)
        self._check_reader(principal)
        seq = _decimal(request.path_params["seq"], "entry seq")
        checked = await anyio.to_thread.run_sync(check_entry, self._database, self._origin, seq)
        return JSONResponse(_detail(checked).model_dump())

    def _check_reader(self, principal: Principal) -> None:
        if not self._roles.intersection(principal.roles):
            raise NotAnAuditor(
                f"reading the audit log needs one of the roles {sorted(self._roles)} "
                f"(audit.reader_roles); {principal.sub} has {sorted(principal.roles)}"
            )


def search_query(params: QueryParams) -> SearchQuery:
    """The filters of ``GET /v1/audit/entries``. Raises BadRequest naming the parameter:
    unknown or repeated parameters, empty values, malformed times, kinds, numbers."""
    unknown = sorted(set(params.keys()) - set(FILTERS))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {unknown[0]!r}; the filters are {', '.join(FILTERS)}"
        )
    values: dict[str, str] = {}
    for name in FILTERS:
        given = params.getlist(name)
        if len(given) > 1:
            raise BadRequest(f"query parameter {name!r} is given {len(given)} times; give it once")
        if given:
            if not given[0]:
                raise BadRequest(f"query parameter {name!r} is empty; leave it out to not filter")
            if len(given[0]) > MAX_VALUE_LENGTH:
                raise BadRequest(f"query parameter {name!r} is longer than {MAX_VALUE_LENGTH}")
            values[name] = given[0]
    since = _time(values.get("since"), "since")
    until = _time(values.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise BadRequest(f"since ({since}) is after until ({until})")
    kind = values.get("kind")
    if kind is not None and not KIND_PATTERN.fullmatch(kind):
        raise BadRequest(
            f"kind {kind!r} is not an entry kind (lower-case dotted, e.g. call.decision)"
        )
    limit = DEFAULT_LIMIT
    if "limit" in values:
        limit = _decimal(values["limit"], "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    cursor = values.get("cursor")
    return SearchQuery(
        since=since,
        until=until,
        principal=values.get("principal"),
        tool=values.get("tool"),
        kind=kind,
        ref=values.get("ref"),
        before=None if cursor is None else _decimal(cursor, "cursor"),
        limit=limit,
    )


def _time(value: str | None, name: str) -> str | None:
    return None if value is None else leaf_time(value, name)


def _decimal(value: str, name: str) -> int:
    # Digits only (no sign, space or "1e3"), and small enough for a database integer.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadRequest(f"{name} must be a non-negative decimal integer, got {value!r}")
    return int(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _checkpoint(stored: StoredCheckpoint | None) -> CheckpointBody | None:
    if stored is None:
        return None
    return CheckpointBody(size=stored.size, root=_b64(stored.root), ts=stored.ts, note=stored.note)


def _summary(checked: CheckedEntry) -> AuditEntrySummary:
    entry = checked.entry
    return AuditEntrySummary(
        seq=entry.seq,
        ts=entry.ts,
        kind=entry.kind,
        ref=entry.ref,
        principal=entry.subject,
        tool=entry.tool,
        payload_status=checked.payload_state.value,
        erasure_seq=checked.erasure_seq,
        verification=VerificationBody(
            status=checked.status.value, reason=checked.reason, code=checked.code
        ),
        url=f"{ENTRIES_PATH}/{entry.seq}",
    )


def _detail(checked: CheckedEntry) -> AuditEntryDetail:
    proof = checked.proof
    return AuditEntryDetail(
        **_summary(checked).model_dump(),
        leaf=_b64(checked.entry.leaf),
        leaf_hash=checked.entry.leaf_hash.hex(),
        payload=checked.entry.payload,
        proof=None
        if proof is None
        else ProofBody(
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            root=_b64(proof.root),
            hashes=[_b64(h) for h in proof.hashes],
            receipt=proof.receipt,
        ),
        checkpoint=_checkpoint(checked.checkpoint),
    )


# --- OpenAPI ---------------------------------------------------------------------------

OPENAPI_MODELS = (AuditEntryList, AuditEntryDetail)


def openapi_paths(error: dict[str, Any], auth_errors: dict[str, Any]) -> dict[str, Any]:
    """The explorer's routes for /openapi.json (docs/audit.md#the-audit-explorer)."""

    def json_body(name: str, description: str) -> dict[str, Any]:
        schema = {"$ref": f"#/components/schemas/{name}"}
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema or {"type": "string"},
            "description": description,
        }

    forbidden = {**error, "description": "not_an_auditor: no role of audit.reader_roles"}
    return {
        ENTRIES_PATH: {
            "get": {
                "summary": "Audit entries matching every given filter, newest first, each "
                "checked against the latest checkpoint",
                "operationId": "searchAuditEntries",
                "parameters": [
                    query("since", "From this time (RFC 3339; UTC without an offset)"),
                    query("until", "Up to this time, inclusive (RFC 3339)"),
                    query("principal", "The caller's sub"),
                    query("tool", "Gateway tool name, <upstream>__<tool>"),
                    query("kind", "Entry kind, e.g. call.decision"),
                    query("ref", "Request, run or approval id"),
                    query(
                        "limit",
                        f"How many (default {DEFAULT_LIMIT})",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    ),
                    query("cursor", "next_cursor of the previous page"),
                ],
                "responses": {
                    "200": json_body("AuditEntryList", "The entries"),
                    "400": {**error, "description": "Unknown, repeated or malformed parameter"},
                    **auth_errors,
                    "403": forbidden,
                },
            }
        },
        ENTRIES_PATH + "/{seq}": {
            "get": {
                "summary": "One audit entry with its payload, inclusion proof and receipt",
                "operationId": "getAuditEntry",
                "parameters": [
                    {
                        "name": "seq",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
                "responses": {
                    "200": json_body("AuditEntryDetail", "The entry, checked"),
                    "400": {**error, "description": "seq is not a decimal number"},
                    **auth_errors,
                    "403": forbidden,
                    "404": {**error, "description": "audit_entry_not_found"},
                },
            }
        },
    }
