"""A schema upgrade while the previous release serves (docs/operations.md, Upgrades).

The previous release's code is taken from its commit (`PREVIOUS_RELEASE` and
`PREVIOUS_RELEASE_COMMIT`, the one place it is named; docs/operations.md#releases says
when it moves) with `git archive`,
and its `gateway serve` runs from that tree with this checkout's virtualenv, on a fresh
PostgreSQL database it migrates to the schema it knows. While it serves a steady load,
this checkout's `gateway db migrate` brings the database to the newest schema; the
previous release goes on answering every call, a replica of this checkout joins it on
the same database (a rolling upgrade), and the log both wrote verifies as one chain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid
from io import BytesIO
from pathlib import Path

import pytest
import yaml

from gateway.store import create_engine
from gateway.store.db import SCHEMA_HEAD, schema_revision
from tests.support.processes import (
    REPO,
    GatewayServer,
    McpUpstreamServer,
    spawn,
    wait_for_http,
    write_policy,
)
from tests.support.replicas import CallLoad, audit_facts
from tests.support.waiting import TIMEOUT_S, eventually

pytestmark = [pytest.mark.postgres]

# The release before this code: its tag, and the commit the tag names. The upgrade is
# tested from that commit, which every full clone of main holds, so the test does not
# depend on how a clone fetched tags; where the tag is present it must name that
# commit (a moved tag fails). Both move to the newest release when one is made
# (docs/operations.md, Releases).
PREVIOUS_RELEASE = "v0.2.0"
PREVIOUS_RELEASE_COMMIT = "0d629bd1f92b907972bc90e6cb02a96946d3e1c2"
GRANTS = [{"role": "agent", "tool": "up__*"}]
CALLS = 240
CLIENTS = 3


def previous_release(into: Path) -> Path:
    """The tree of `PREVIOUS_RELEASE`, extracted into ``into``. Fails (never skips)
    when its commit cannot be had: an untested upgrade path is a failure."""
    if _git("cat-file", "-e", f"{PREVIOUS_RELEASE_COMMIT}^{{commit}}").returncode != 0:
        # A shallow clone: the release is asked of the clone's origin once.
        _git("fetch", "--quiet", "--no-tags", "origin", "tag", PREVIOUS_RELEASE)
    if _git("cat-file", "-e", f"{PREVIOUS_RELEASE_COMMIT}^{{commit}}").returncode != 0:
        pytest.fail(
            f"the previous release {PREVIOUS_RELEASE} ({PREVIOUS_RELEASE_COMMIT}) is not in "
            f"this clone ({REPO}) nor fetched from its origin: clone with history "
            "(`git fetch --unshallow --tags`). The upgrade from it cannot be tested without it."
        )
    tagged = _git("rev-parse", "--verify", "--quiet", f"{PREVIOUS_RELEASE}^{{commit}}")
    if tagged.returncode == 0 and tagged.stdout.strip() != PREVIOUS_RELEASE_COMMIT:
        pytest.fail(
            f"tag {PREVIOUS_RELEASE} names {tagged.stdout.strip()}, not the release's "
            f"commit {PREVIOUS_RELEASE_COMMIT}: a release tag never moves"
        )
    archive = subprocess.run(
        ["git", "archive", "--format=tar", PREVIOUS_RELEASE_COMMIT],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def old_tree(tmp_path: Path) -> Path:
    return previous_release(tmp_path / "previous-release")


def start_previous(server: GatewayServer, tree: Path) -> GatewayServer:
    """``server``'s config served by the previous release's code (its tree first on the
    import path, this checkout's virtualenv for the dependencies)."""
    config = dict(server.config)
    if not config.get("limits"):
        config.pop("limits", None)  # a key a release before limits does not know
    server.config_path.write_text(yaml.safe_dump(config))
    server.process = spawn(
        [sys.executable, "-m", "gateway", "serve", "--config", str(server.config_path)],
        server.directory / "gateway.log",
        env={"PYTHONPATH": str(tree)},
        cwd=tree,
    )
    wait_for_http(server.url + "/healthz", server.process)
    return server


def test_migrating_while_the_previous_release_serves(
    tmp_path: Path, old_tree: Path, upstream: McpUpstreamServer, pg_database_url: str
) -> None:
    old = GatewayServer.configure(
        tmp_path / "old",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 30}],
        policy=write_policy(tmp_path / "old-policy", GRANTS, policies=old_tree / "policies"),
        storage_url=pg_database_url,
    )
    start_previous(old, old_tree)
    engine = create_engine(pg_database_url)
    try:
        before = schema_revision(engine)
        assert before is not None and before <= SCHEMA_HEAD, before
        marker = f"upgrade-{uuid.uuid4().hex[:6]}"
        load = CallLoad([old], tool="up__echo", total=CALLS, clients=CLIENTS, marker=marker)
        load.start()
        eventually(lambda: load.count(lambda a: a.status == 200) >= CALLS // 4, "calls served")

        # This checkout's migration, as the owner role, while the old release serves.
        migrated = subprocess.run(
            [sys.executable, "-m", "gateway", "db", "migrate", "--config", str(old.config_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S * 2,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert schema_revision(engine) == SCHEMA_HEAD
        # The old release answers on the new schema (whatever the load got to by now).
        after = CallLoad([old], tool="up__echo", total=40, clients=2, marker=f"{marker}-after")
        answers_after = after.start().wait(TIMEOUT_S * 2)

        # A replica of this checkout joins on the same database: a rolling upgrade.
        new = GatewayServer.configure(
            tmp_path / "new",
            upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 30}],
            policy=write_policy(tmp_path / "new-policy", GRANTS),
            storage_url=pg_database_url,
        )
        new.issuer_key = old.issuer_key
        new.config["identity"] = old.config["identity"]
        new.config["audit"] = old.config["audit"]
        new.start()
        answers = load.wait(TIMEOUT_S * 5)
        both = CallLoad([old, new], tool="up__echo", total=40, clients=2, marker=f"{marker}-both")
        answers_both = both.start().wait(TIMEOUT_S * 2)
    finally:
        engine.dispose()
        for server in (old, locals().get("new")):
            if server is not None and server.process is not None:
                server.stop()

    assert [a for a in answers if a.status != 200] == []
    assert [a for a in answers_after if a.status != 200] == []
    assert [a for a in answers_both if a.status != 200] == []
    facts = audit_facts(pg_database_url)
    assert not facts.faults, facts.faults
    assert not facts.duplicated(), facts.duplicated()[:5]
    for answer in [*answers, *answers_after, *answers_both]:
        assert len(facts.refs_by_text.get(answer.text, [])) == 1, answer
