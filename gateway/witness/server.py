"""The witness's HTTP endpoint: ``POST /add-checkpoint`` (C2SP tlog-witness).

The request body is a consistency proof in the add-checkpoint form
(`gateway.tlog.consistency`): ``old <size>``, the proof lines, a blank line, the
signed checkpoint. The answers, in the order the spec checks them:

- 400 a malformed body, or an old size above the checkpoint's size;
- 404 an origin this witness does not follow;
- 403 no signature by a key this witness trusts for that origin verifies;
- 409 the old size is not the size this witness last cosigned for the origin (body:
  that size and a newline, ``Content-Type: text/x.tlog.size``), or the old size
  equals the checkpoint's size but the roots differ (a fork at one size);
- 422 the consistency proof does not verify (or is not empty from size 0);
- 200 the witness stored the new head, then answers its cosignature line.

409 and 422 after a valid log signature are kept in the state's ``refusals``: a
signed checkpoint that contradicts an earlier one is evidence. Nothing is cosigned
unless the new head was stored first (`WitnessState.advance`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.tlog.consistency import ConsistencyFormatError, parse_consistency_proof
from gateway.tlog.errors import NoteError, ProofError
from gateway.tlog.keys import VerifierKey
from gateway.tlog.note import verify_note
from gateway.tlog.verify_proof import verify_consistency
from gateway.witness.keys import WitnessSigner
from gateway.witness.state import TreeHead, WitnessState

logger = logging.getLogger("gateway.witness")

ADD_CHECKPOINT_PATH = "/add-checkpoint"
SIZE_MEDIA_TYPE = "text/x.tlog.size"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
# A checkpoint with its signatures and 63 proof lines is a few KiB; anything much
# larger is not a request this witness will read.
MAX_BODY_BYTES = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: int, reason: str, *, size: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size


@dataclass(frozen=True)
class WitnessConfig:
    """What `gateway witness serve` runs with: its key, its state, the logs it follows
    (origin -> the log's verifier keys, C2SP signed-note type 0x01)."""

    signer: WitnessSigner
    state: WitnessState
    logs: Mapping[str, Sequence[VerifierKey]]
    now: Callable[[], float] = time.time


def logs_from_keys(keys: Sequence[VerifierKey]) -> dict[str, list[VerifierKey]]:
    """Logs by origin: a log's key is named by its origin (architecture.md §6), so
    each key names the log it signs for; several keys of one origin are a rotation."""
    logs: dict[str, list[VerifierKey]] = {}
    for key in keys:
        logs.setdefault(key.name, []).append(key)
    return logs


def build_witness_app(config: WitnessConfig) -> Starlette:
    """The witness as an ASGI app."""

    async def add_checkpoint(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _text(413, f"request body is larger than {MAX_BODY_BYTES} bytes\n")
        try:
            line = await anyio.to_thread.run_sync(_add_checkpoint, config, body)
        except _Refused as refused:
            if refused.status == 409 and refused.size is not None:
                # Exactly this media type (tlog-witness): Starlette would append a
                # charset to a text/* media_type, so the header is set as is.
                return Response(
                    f"{refused.size}\n".encode("ascii"),
                    status_code=409,
                    headers={"Content-Type": SIZE_MEDIA_TYPE},
                )
            return _text(refused.status, refused.reason + "\n")
        return PlainTextResponse(line, media_type=TEXT_MEDIA_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n", media_type=TEXT_MEDIA_TYPE)

    return Starlette(
        routes=[
            Route(ADD_CHECKPOINT_PATH, add_checkpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _add_checkpoint(config: WitnessConfig, body: bytes) -> str:
    """The cosignature line for a valid request; raises _Refused otherwise."""
    try:
        request = parse_consistency_proof(body)
    except ConsistencyFormatError as exc:
        raise _Refused(400, exc.message) from None
    checkpoint = request.checkpoint
    keys = config.logs.get(checkpoint.origin)
    if keys is None:
        raise _Refused(404, f"this witness does not follow log {checkpoint.origin!r}")
    try:
        verified = verify_note(request.note, keys)
    except NoteError as exc:
        raise _Refused(
            403, f"checkpoint not signed by a key of {checkpoint.origin}: {exc.message}"
        ) from None
    if request.old_size > checkpoint.size:
        raise _Refused(
            400, f"old size {request.old_size} is above the checkpoint's {checkpoint.size}"
        )
    text = verified.text
    new = TreeHead(checkpoint.size, checkpoint.root)

    def check(current: TreeHead | None) -> None:
        have = 0 if current is None else current.size
        if request.old_size != have:
            raise _Refused(
                409,
                f"old size {request.old_size}, but the witness cosigned size {have}",
                size=have,
            )
        if current is None:
            if request.proof:
                raise _Refused(422, "a proof from size 0 must be empty")
            return  # the first checkpoint of a log: nothing to be consistent with
        if request.old_size == checkpoint.size:
            if request.proof:
                raise _Refused(422, "a proof between equal sizes must be empty")
            if checkpoint.root != current.root:
                raise _Refused(
                    409,
                    f"fork: a second root for tree size {checkpoint.size}",
                    size=None,
                )
            return
        try:
            verify_consistency(
                current.size, checkpoint.size, request.proof, current.root, checkpoint.root
            )
        except ProofError as exc:
            raise _Refused(
                422, f"not consistent with tree size {current.size}: {exc.message}"
            ) from None

    try:
        config.state.advance(checkpoint.origin, new, check)
    except _Refused as refused:
        # A stale old size (409 with a size) is a client catching up; a fork (409
        # without) or a failing proof (422) is signed by the log and contradicts what
        # it signed before: evidence, kept.
        if refused.status == 422 or (refused.status == 409 and refused.size is None):
            config.state.record_refusal(
                checkpoint.origin, refused.status, refused.reason, body.decode("utf-8")
            )
            logger.warning("refused checkpoint of %s: %s", checkpoint.origin, refused.reason)
        raise
    cosignature = config.signer.cosign(text, int(config.now()))
    logger.info("cosigned %s at tree size %d", checkpoint.origin, checkpoint.size)
    return cosignature.line()


async def _read_body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _text(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, media_type=TEXT_MEDIA_TYPE)
