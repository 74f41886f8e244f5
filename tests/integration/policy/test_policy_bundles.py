"""Signed OPA bundles for the embedded engine: built by the real `opa build -b -t wasm
--signing-key`, served by a bundle server on loopback, polled with ETags. A bundle that
is unsigned, tampered with or signed by another key is refused, the previous policy
keeps serving, and `policy.rejected` is in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditEntry, AuditLog, read_entries
from gateway.config import EmbeddedPolicyConfig
from gateway.errors import PolicyLoadError
from gateway.policy.bundle_signing import BundleSignatureInvalid
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.lifecycle import start_policy
from gateway.policy.origins import build_embedded_engine
from gateway.policy.reload import PolicyReloader
from gateway.store import create_engine, migrate
from tests.support.bundles import (
    Algorithm,
    BundleServer,
    KeyPair,
    build_bundle,
    generate_key,
    read_member,
    tamper,
    without,
)
from tests.support.fixture_policy import write_fixture_data, write_fixture_policy

pytestmark = pytest.mark.anyio

ECHO = {"role": "agent", "tool": "demo__echo"}
WHOAMI = {"role": "agent", "tool": "demo__whoami"}


def call(tool: str) -> dict[str, Any]:
    return {
        "version": 1,
        "subject": {"sub": "agent:t", "roles": ["agent"], "act_chain": []},
        "action": "tools/call",
        "resource": {"tool": tool},
        "arguments": {},
        "context": {},
    }


@dataclass
class Bundles:
    """A policy folder, its signing key and a way to build bundles of it."""

    folder: Path
    out: Path
    key: KeyPair

    def build(
        self, revision: str, grants: list[dict[str, Any]], key: KeyPair | None = None
    ) -> Path:
        write_fixture_data(self.folder, grants)
        return build_bundle(
            self.folder,
            self.out / f"{revision}.tar.gz",
            revision=revision,
            key=key or self.key,
            entrypoints=("gateway/decision",),  # the fixture policy has no list rule
        )

    def config(self, **bundle: Any) -> EmbeddedPolicyConfig:
        signing = {
            "keys": {"default": {"algorithm": self.key.algorithm, "key_file": str(self.key.public)}}
        }
        return EmbeddedPolicyConfig(
            path=self.folder, watch=False, bundle={"signing": signing, **bundle}
        )


def make_bundles(tmp_path: Path, algorithm: Algorithm = "RS256") -> Bundles:
    folder = write_fixture_policy(tmp_path / "policy", [ECHO])
    out = tmp_path / "built"
    out.mkdir()
    return Bundles(folder, out, generate_key(tmp_path / "keys", algorithm))


@pytest.fixture
def bundles(tmp_path: Path) -> Bundles:
    return make_bundles(tmp_path)


@pytest.fixture
def server() -> Iterator[BundleServer]:
    served = BundleServer().start()
    yield served
    served.stop()


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[tuple[AuditLog, Engine]]:
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    log = AuditLog(database, "test.bundles/audit")
    await log.start()
    yield log, database
    await log.close()
    database.dispose()


def entries(database: Engine, kind: str) -> list[AuditEntry]:
    return read_entries(database, kind=kind)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_a_signed_bundle_from_a_file_is_served_with_its_revision(
    tmp_path: Path, algorithm: Algorithm
) -> None:
    bundles = make_bundles(tmp_path, algorithm)
    bundle = bundles.build("rev-1", [ECHO])
    engine = build_embedded_engine(bundles.config(file=str(bundle)))
    assert engine.revision == "rev-1"  # the manifest's revision, recorded with every decision
    decision = engine.evaluate_sync(call("demo__echo"))
    assert decision.allow and decision.revision == "rev-1"
    assert not engine.evaluate_sync(call("demo__whoami")).allow
    assert "gateway/visible" not in engine.compiled.entrypoints  # the fixture has no list rule


async def test_a_signed_bundle_over_http_is_accepted_and_polled_with_etags(
    bundles: Bundles, server: BundleServer, audit: tuple[AuditLog, Engine]
) -> None:
    log, database = audit
    server.serve(bundles.build("rev-1", [ECHO]))
    config = bundles.config(url=server.url)
    engine = build_embedded_engine(config)
    await start_policy(config, engine, log)
    assert engine.revision == "rev-1"
    reloader = PolicyReloader(engine, log, config)

    # Nothing new: the server sees the ETag of what it served last and answers 304.
    await reloader.reload("poll")  # the first poll learns the ETag (same bytes: unchanged)
    assert (await reloader.reload("poll")).status == "unchanged"
    assert server.requests[-1] == {"if_none_match": server.etag, "status": 304}

    # A new revision is picked up without a restart, recorded before it serves.
    server.serve(bundles.build("rev-2", [WHOAMI]))
    result = await reloader.reload("poll")
    assert (result.status, result.revision, result.previous_revision) == (
        "loaded",
        "rev-2",
        "rev-1",
    )
    assert engine.revision == "rev-2"
    assert engine.evaluate_sync(call("demo__whoami")).allow
    assert not engine.evaluate_sync(call("demo__echo")).allow
    loaded = [e.payload for e in entries(database, "policy.loaded")]
    assert [(p["revision"], p["trigger"]) for p in loaded] == [
        ("rev-1", "start"),
        ("rev-2", "poll"),
    ]


@pytest.mark.parametrize("defect", ["tampered data", "tampered wasm", "wrong key", "unsigned"])
async def test_a_bad_bundle_is_refused_and_the_previous_policy_serves(
    tmp_path: Path,
    bundles: Bundles,
    server: BundleServer,
    audit: tuple[AuditLog, Engine],
    defect: str,
) -> None:
    log, database = audit
    server.serve(bundles.build("rev-1", [ECHO]))
    config = bundles.config(url=server.url)
    engine = build_embedded_engine(config)
    reloader = PolicyReloader(engine, log, config)

    good = bundles.build("rev-2", [WHOAMI])
    bad = tmp_path / "bad.tar.gz"
    if defect == "tampered data":
        tamper(good, bad, "data.json", b'{"fixture": {"grants": [{"role": "agent", "tool": "*"}]}}')
    elif defect == "tampered wasm":
        wasm = bytearray(read_member(good, "policy.wasm"))
        wasm[-1] ^= 1
        tamper(good, bad, "policy.wasm", bytes(wasm))
    elif defect == "wrong key":
        other = generate_key(tmp_path / "other", "RS256", "other")
        bad = bundles.build("rev-2", [WHOAMI], key=other)
    else:
        without(good, bad, ".signatures.json")
    server.serve(bad)

    result = await reloader.reload("poll")
    assert result.status == "rejected"
    assert engine.revision == "rev-1"
    assert engine.evaluate_sync(call("demo__echo")).allow  # the previous policy serves
    [rejected] = [e.payload for e in entries(database, "policy.rejected")]
    assert rejected["previous_revision"] == "rev-1"
    assert rejected["trigger"] == "poll"
    assert rejected["error"]["code"] == BundleSignatureInvalid.code
    expected = {
        "tampered data": "data.json does not match its signature",
        "tampered wasm": "policy.wasm does not match its signature",
        "wrong key": "does not verify with key 'default'",
        "unsigned": "is not signed",
    }[defect]
    assert expected in rejected["error"]["message"]

    # Refused once, not at every poll: the server's answer has not changed.
    assert (await reloader.reload("poll")).status == "unchanged"
    assert len(entries(database, "policy.rejected")) == 1


def test_an_unsigned_bundle_is_refused_at_start(tmp_path: Path, bundles: Bundles) -> None:
    good = bundles.build("rev-1", [ECHO])
    unsigned = without(good, tmp_path / "unsigned.tar.gz", ".signatures.json")
    with pytest.raises(BundleSignatureInvalid, match="is not signed"):
        build_embedded_engine(bundles.config(file=str(unsigned)))
    # Only when the config says, in so many words, that unsigned bundles are accepted.
    config = EmbeddedPolicyConfig(
        path=bundles.folder, watch=False, bundle={"file": str(unsigned), "allow_unsigned": True}
    )
    assert build_embedded_engine(config).revision == "rev-1"


def test_a_bundle_server_that_is_down_at_start_is_a_load_error(bundles: Bundles) -> None:
    with pytest.raises(PolicyLoadError, match="could not be reached"):
        build_embedded_engine(bundles.config(url="http://127.0.0.1:9/bundle.tar.gz", timeout_s=2))


async def test_a_replaced_bundle_file_is_reloaded(
    tmp_path: Path, bundles: Bundles, audit: tuple[AuditLog, Engine]
) -> None:
    log, _ = audit
    live = tmp_path / "live.tar.gz"
    live.write_bytes(bundles.build("rev-1", [ECHO]).read_bytes())
    config = bundles.config(file=str(live))
    engine: EmbeddedEngine = build_embedded_engine(config)
    reloader = PolicyReloader(engine, log, config)
    assert (await reloader.reload("watch")).status == "unchanged"
    live.write_bytes(bundles.build("rev-2", [WHOAMI]).read_bytes())
    assert (await reloader.reload("watch")).status == "loaded"
    assert engine.revision == "rev-2"
