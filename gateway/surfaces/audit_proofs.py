"""Consistency proofs for auditors: ``GET /v1/audit/proof/consistency?from=N&to=M``.

Proves that the stored checkpoint of size M extends the one of size N
(`gateway.audit.consistency`). The answer carries both signed checkpoints (with any
witnesses' cosignatures), the proof hashes, and ``proof``: the same as a file of
`gateway audit prove --consistency N M`, which an auditor checks offline against the
checkpoint of size N they kept (`gateway audit verify --consistency FILE
--trusted-checkpoint N_FILE`). Needs a role of ``audit.reader_roles``, like the
explorer: what auditors read, auditors are given.
"""

from __future__ import annotations

import base64
from typing import Any

import anyio
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.consistency import check_range, consistency_between
from gateway.audit.stored_checkpoints import StoredCheckpoint
from gateway.errors import BadRequest, NotAnAuditor
from gateway.surfaces.auth import principal_of

CONSISTENCY_PATH = "/v1/audit/proof/consistency"
PARAMETERS = ("from", "to")
# 18 digits keep a size within a signed 64-bit database integer (as the explorer does).
MAX_DIGITS = 18


class SignedCheckpointBody(BaseModel):
    size: int = Field(description="Tree size: the entries 0 to size-1 it covers")
    root: str = Field(description="Root hash, base64")
    note: str = Field(
        description="The signed checkpoint (C2SP tlog-checkpoint) with any witnesses' "
        "cosignature lines, verbatim"
    )


class ConsistencyProofBody(BaseModel):
    from_checkpoint: SignedCheckpointBody = Field(description="The older checkpoint (size N)")
    to_checkpoint: SignedCheckpointBody = Field(description="The newer checkpoint (size M)")
    hashes: list[str] = Field(
        description="RFC 9162 §2.1.4 consistency proof from N to M, base64; empty when N = M"
    )
    proof: str = Field(
        description="The proof as a file for `gateway audit verify --consistency`: the "
        "C2SP tlog-witness add-checkpoint body (old N, the hashes, the checkpoint of M)"
    )


class AuditProofs:
    def __init__(self, database: Engine, *, reader_roles: list[str]) -> None:
        self._database = database
        self._roles = frozenset(reader_roles)

    def routes(self) -> list[Route]:
        return [Route(CONSISTENCY_PATH, self.consistency, methods=["GET"])]

    async def consistency(self, request: Request) -> Response:
        principal = principal_of(request)
        if not self._roles.intersection(principal.roles):
            raise NotAnAuditor(
                f"consistency proofs need one of the roles {sorted(self._roles)} "
                f"(audit.reader_roles); {principal.sub} has {sorted(principal.roles)}"
            )
        from_size, to_size = sizes_of(request)
        result = await anyio.to_thread.run_sync(
            consistency_between, self._database, from_size, to_size
        )
        body = ConsistencyProofBody(
            from_checkpoint=_checkpoint(result.old),
            to_checkpoint=_checkpoint(result.new),
            hashes=[_b64(h) for h in result.proof],
            proof=result.text,
        )
        return JSONResponse(body.model_dump())


def sizes_of(request: Request) -> tuple[int, int]:
    """``from`` and ``to``, each given once, as tree sizes. Raises BadRequest naming
    the parameter at fault."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; give from and to")
    values = []
    for name in PARAMETERS:
        given = params.getlist(name)
        if len(given) != 1:
            raise BadRequest(
                f"query parameter {name!r} is required once, as a checkpoint's tree size "
                f"(got it {len(given)} times)"
            )
        value = given[0]
        if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
            raise BadRequest(f"{name} must be a tree size in decimal, got {value[:40]!r}")
        values.append(int(value))
    check_range(values[0], values[1])
    return values[0], values[1]


def _checkpoint(stored: StoredCheckpoint) -> SignedCheckpointBody:
    return SignedCheckpointBody(size=stored.size, root=_b64(stored.root), note=stored.note)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


OPENAPI_MODELS = (ConsistencyProofBody,)


def openapi_paths(error: dict[str, Any], auth_errors: dict[str, Any]) -> dict[str, Any]:
    """The route for /openapi.json (docs/audit.md#consistency-proofs)."""

    def size(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
            "description": description,
        }

    schema = {"$ref": "#/components/schemas/ConsistencyProofBody"}
    return {
        CONSISTENCY_PATH: {
            "get": {
                "summary": "Proof that the checkpoint of size `to` extends the one of size `from`",
                "operationId": "getAuditConsistencyProof",
                "parameters": [
                    size("from", "Tree size of the older checkpoint (at least 1)"),
                    size("to", "Tree size of the newer checkpoint (at least from)"),
                ],
                "responses": {
                    "200": {
                        "description": "Both checkpoints and the proof, checked before sending",
                        "content": {"application/json": {"schema": schema}},
                    },
                    "400": {
                        **error,
                        "description": "A missing, repeated or malformed size, from = 0, "
                        "or from above to",
                    },
                    **auth_errors,
                    "403": {
                        **error,
                        "description": "not_an_auditor: no role of audit.reader_roles",
                    },
                    "404": {
                        **error,
                        "description": "audit_proof_unavailable: no checkpoint of that size",
                    },
                },
            }
        }
    }
