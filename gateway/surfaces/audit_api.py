"""Audit endpoints for auditors: ``GET /v1/audit/checkpoint`` and ``GET /v1/audit/keys``.

Both answer ``text/plain`` in the published formats (docs/audit.md), so what a client
fetches here is byte for byte what a sink publishes. Neither needs a token: a
checkpoint states only a size and a root, and is meant to be copied far and wide —
the more copies, the harder it is to rewrite the log unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.audit.keys import read_keys
from gateway.audit.stored_checkpoints import StoredCheckpoint, latest_checkpoint, read_checkpoint
from gateway.errors import BadRequest, GatewayError
from gateway.surfaces.middleware import request_id_of
from gateway.surfaces.rest_io import error_response
from gateway.tlog.errors import ProofUnavailable
from gateway.tlog.keys import format_keys

CHECKPOINT_PATH = "/v1/audit/checkpoint"
KEYS_PATH = "/v1/audit/keys"
MEDIA_TYPE = "text/plain; charset=utf-8"
# A stored checkpoint of a given size never changes; the latest one does.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def routes(database: Engine) -> list[Route]:
    """The audit routes, reading from ``database``."""

    async def checkpoint(request: Request) -> Response:
        try:
            size = _size_param(request.query_params.get("size"))
            stored, final = await anyio.to_thread.run_sync(_read_checkpoint(database, size))
        except GatewayError as error:
            return error_response(error, request_id_of(request))
        return PlainTextResponse(
            stored.note,
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": IMMUTABLE if final else REVALIDATE},
        )

    async def keys(request: Request) -> Response:
        text = await anyio.to_thread.run_sync(lambda: format_keys(read_keys(database)))
        return PlainTextResponse(text, media_type=MEDIA_TYPE, headers={"Cache-Control": REVALIDATE})

    return [
        Route(CHECKPOINT_PATH, checkpoint, methods=["GET"]),
        Route(KEYS_PATH, keys, methods=["GET"]),
    ]


def _size_param(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or (len(value) > 1 and value[0] == "0"):
        raise BadRequest(f"size must be a tree size in decimal, got {value!r}")
    return int(value)


def _read_checkpoint(
    database: Engine, size: int | None
) -> Callable[[], tuple[StoredCheckpoint, bool]]:
    """The checkpoint, and whether its text is final. Witnesses only cosign the latest
    checkpoint, so one older than the latest never changes again (cacheable forever);
    the latest may still gain cosignature lines."""

    def read() -> tuple[StoredCheckpoint, bool]:
        latest = latest_checkpoint(database)
        if size is None:
            if latest is None:
                raise ProofUnavailable("no audit checkpoint yet: the log is empty or new")
            return latest, False
        stored = read_checkpoint(database, size)
        if stored is None:
            raise ProofUnavailable(f"no audit checkpoint of tree size {size}")
        return stored, latest is not None and stored.size < latest.size

    return read
