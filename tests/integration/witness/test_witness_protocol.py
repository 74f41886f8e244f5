"""The witness's add-checkpoint protocol (C2SP tlog-witness), over HTTP to the real
app with a real state file: every answer the spec names, and that a fork, a rollback
or a forged checkpoint is never cosigned (and changes nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.audit.keys import SigningKey
from gateway.tlog.checkpoint import Checkpoint, sign_checkpoint
from gateway.tlog.consistency import format_consistency_proof
from gateway.tlog.cosignature import verify_cosignatures
from gateway.tlog.leaf import leaf_hash
from gateway.tlog.proof import MemoryTree, consistency_proof
from gateway.witness.keys import generate_witness_key, load_witness_key
from gateway.witness.server import (
    SIZE_MEDIA_TYPE,
    WitnessConfig,
    build_witness_app,
    logs_from_keys,
)
from gateway.witness.state import TreeHead, WitnessState

ORIGIN = "test.example/log"
NOW = 1_800_000_000


class Log:
    """A log: its leaves and key; `request` builds an add-checkpoint body."""

    def __init__(self, key: SigningKey, tag: bytes = b"") -> None:
        self.key = key
        self.tag = tag
        self.tree = MemoryTree()

    def grow(self, n: int) -> Log:
        for _ in range(n):
            self.tree.append(leaf_hash(self.tag + str(self.tree.size).encode()))
        return self

    def note(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.tree.root(size)), [self.key])

    def request(self, old: int, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        proof = consistency_proof(self.tree, old, size) if old else []
        return format_consistency_proof(old, proof, self.note(size))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[httpx.Client, Log, WitnessState, WitnessConfig]]:
    key = SigningKey.generate(ORIGIN)
    generate_witness_key(tmp_path / "w.pem", "witness.test/w1")
    signer = load_witness_key(tmp_path / "w.pem", "witness.test/w1")
    state = WitnessState(tmp_path / "state.db")
    config = WitnessConfig(signer, state, logs_from_keys([key.verifier]), now=lambda: NOW)
    transport = httpx.ASGITransport(app=build_witness_app(config))
    # A sync facade over the ASGI app: httpx's ASGITransport is async only.
    client = _SyncAsgi(transport)
    yield client, Log(key), state, config  # type: ignore[misc]


class _SyncAsgi:
    def __init__(self, transport: httpx.ASGITransport) -> None:
        self._transport = transport

    def post(self, path: str, content: str | bytes) -> httpx.Response:
        import anyio

        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=self._transport, base_url="http://w") as c:
                response = await c.post(path, content=content)
                await response.aread()
                return response

        return anyio.run(send)


def add(client: httpx.Client, body: str | bytes) -> httpx.Response:
    return client.post("/add-checkpoint", content=body)


def test_first_checkpoint_then_consistent_ones_are_cosigned(setup) -> None:
    client, log, state, config = setup
    log.grow(5)
    first = add(client, log.request(0))
    assert first.status_code == 200, first.text
    witness = config.signer.verifier
    [cosignature] = verify_cosignatures(log.note() + first.text, [witness], minimum=1)
    assert cosignature.timestamp == NOW
    log.grow(7)
    second = add(client, log.request(5))
    assert second.status_code == 200, second.text
    verify_cosignatures(log.note() + second.text, [witness], minimum=1)
    assert state.head(ORIGIN) == TreeHead(12, log.tree.root())
    # The same checkpoint again (old = size): cosigned again, the view unchanged.
    again = add(client, log.request(12))
    assert again.status_code == 200
    assert state.head(ORIGIN) == TreeHead(12, log.tree.root())


def test_stale_old_size_is_409_with_the_witness_size(setup) -> None:
    client, log, _state, _ = setup
    log.grow(4)
    assert add(client, log.request(0)).status_code == 200
    log.grow(4)
    response = add(client, log.request(0, 8))  # the client thinks the witness is new
    assert response.status_code == 409
    assert response.headers["content-type"] == SIZE_MEDIA_TYPE
    assert response.text == "4\n"
    assert add(client, log.request(4)).status_code == 200  # retried from the witness's size


def test_fork_is_refused_and_kept_as_evidence(setup) -> None:
    client, log, state, _ = setup
    log.grow(6)
    assert add(client, log.request(0)).status_code == 200
    head = state.head(ORIGIN)
    # Same key, same origin, another history (a restored or forked database).
    fork = Log(log.key, b"fork").grow(9)
    response = add(client, fork.request(6))
    assert response.status_code == 422
    # A second root for the same size.
    same_size = Log(log.key, b"other").grow(6)
    response = add(client, same_size.request(6))
    assert response.status_code == 409
    assert response.headers["content-type"] != SIZE_MEDIA_TYPE
    assert state.head(ORIGIN) == head  # nothing changed
    assert [status for status, _ in state.refusals(ORIGIN)] == [422, 409]


def test_rollback_to_a_smaller_tree_is_refused(setup) -> None:
    client, log, state, _ = setup
    log.grow(10)
    assert add(client, log.request(0)).status_code == 200
    response = add(client, log.request(0, 6))
    assert (response.status_code, response.text) == (409, "10\n")
    response = add(client, log.request(10, 10).replace("old 10", "old 11"))
    assert response.status_code == 400  # old above the checkpoint's size
    assert state.head(ORIGIN) == TreeHead(10, log.tree.root())


def test_unknown_origin_forged_signature_and_malformed_bodies(setup) -> None:
    client, log, state, _ = setup
    log.grow(3)
    stranger = SigningKey.generate("other.example/log")
    other = sign_checkpoint(Checkpoint("other.example/log", 3, log.tree.root()), [stranger])
    assert add(client, format_consistency_proof(0, [], other)).status_code == 404
    impostor = Log(SigningKey.generate(ORIGIN)).grow(3)  # right origin, wrong key
    assert add(client, impostor.request(0)).status_code == 403
    assert add(client, "old 0\n\nnot a checkpoint\n").status_code == 400
    assert add(client, b"\xff\xfe").status_code == 400
    assert add(client, "x" * (65 * 1024)).status_code == 413
    # A non-empty proof from size 0 is refused, not cosigned.
    body = log.request(0).replace("old 0\n", "old 0\n" + "A" * 43 + "=\n")
    assert add(client, body).status_code == 422
    assert state.head(ORIGIN) is None


def test_state_survives_a_restart(tmp_path: Path, setup) -> None:
    client, log, _state, _config = setup
    log.grow(5)
    assert add(client, log.request(0)).status_code == 200
    reopened = WitnessState(tmp_path / "state.db")
    assert reopened.head(ORIGIN) == TreeHead(5, log.tree.root())


def test_concurrent_requests_never_roll_the_view_back(setup) -> None:
    """tlog-witness's race: requests from one old size, checked and stored at once.
    Exactly one is cosigned; the others get 409 with the size it stored."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.witness.server import _add_checkpoint, _Refused

    _, log, state, config = setup
    log.grow(5)
    _add_checkpoint(config, log.request(0).encode())
    log.grow(10)
    bodies = [log.request(5, size).encode() for size in range(6, 16)]

    def submit(body: bytes) -> int:
        try:
            _add_checkpoint(config, body)
        except _Refused as refused:
            return refused.status
        return 200

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(submit, bodies))
    assert statuses.count(200) == 1 and statuses.count(409) == len(bodies) - 1
    winner = 6 + statuses.index(200)
    assert state.head(ORIGIN) == TreeHead(winner, log.tree.root(winner))
