"""Safe reload of the embedded engine, in process: a real engine, a real audit log on
SQLite, real files changing under the watcher."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Engine

from gateway.audit import AuditEntry, AuditLog, read_entries
from gateway.config import ConformanceConfig, EmbeddedPolicyConfig
from gateway.policy import lifecycle
from gateway.policy import reload as reload_module
from gateway.policy.conformance_memo import ConformanceMemo
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.lifecycle import start_policy
from gateway.policy.reload import PolicyReloader, fingerprint
from gateway.store import create_engine, migrate
from tests.support.fixture_policy import write_fixture_data, write_fixture_policy
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.anyio

ECHO = {"role": "agent", "tool": "demo__echo"}
WHOAMI = {"role": "agent", "tool": "demo__whoami"}


def policy_input(tool: str) -> dict[str, Any]:
    return {
        "version": 1,
        "subject": {"sub": "agent:t", "roles": ["agent"], "act_chain": []},
        "action": "tools/call",
        "resource": {"tool": tool},
        "arguments": {},
        "context": {},
    }


def case(tool: str, allow: bool) -> dict[str, Any]:
    """A conformance case pinning whether ``tool`` is allowed."""
    reasons, rule = (
        (["allowed by grant"], "grant") if allow else (["no grant for this tool"], "default_deny")
    )
    return {
        "name": f"{tool} {'allowed' if allow else 'denied'}",
        "input": policy_input(tool),
        "expected": {
            "allow": allow,
            "require_approval": False,
            "reasons": reasons,
            "obligations": {"redact": [], "approvers": []},
            "rule": rule,
        },
    }


@dataclass
class Setup:
    policy: Path
    engine: EmbeddedEngine
    audit: AuditLog
    database: Engine

    def entries(self, kind: str) -> list[AuditEntry]:
        return read_entries(self.database, kind=kind)

    def allows(self, tool: str) -> bool:
        return self.engine.evaluate_sync(policy_input(tool)).allow

    def reloader(self, **config: Any) -> PolicyReloader:
        settings = {"path": self.policy, "watch": False, **config}
        return PolicyReloader(self.engine, self.audit, EmbeddedPolicyConfig(**settings))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    policy = write_fixture_policy(tmp_path / "policy", [ECHO, WHOAMI])
    (policy / "conformance").mkdir()
    (policy / "conformance" / "cases.json").write_text(
        json.dumps({"cases": [case("demo__whoami", True)]})
    )
    database = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(database)
    audit = AuditLog(database, "test.reload/audit")
    await audit.start()
    yield Setup(policy, EmbeddedEngine(policy), audit, database)
    await audit.close()
    database.dispose()


async def test_start_records_the_policy_loaded_with_its_cases(setup: Setup) -> None:
    config = EmbeddedPolicyConfig(path=setup.policy)
    await start_policy(config, setup.engine, setup.audit)
    [loaded] = setup.entries("policy.loaded")
    assert loaded.ref == setup.engine.revision
    assert loaded.payload == {
        "revision": setup.engine.revision,
        "previous_revision": None,
        "engine": "embedded",
        "modules": ["gateway/decision.rego"],
        "trigger": "start",
        "conformance": {"mode": "enforce", "cases": 1, "passed": 1, "remembered": False},
    }


async def test_a_changed_policy_is_loaded_and_recorded(setup: Setup) -> None:
    before = setup.engine.compiled
    write_fixture_data(setup.policy, [WHOAMI])
    result = await setup.reloader().reload("sighup")
    assert result.status == "loaded" and result.previous_revision == before.revision
    assert setup.engine.revision == result.revision != before.revision
    assert not setup.allows("demo__echo") and setup.allows("demo__whoami")
    # A call that started before the swap keeps the bundle it started with.
    assert setup.engine.evaluate_compiled(before, policy_input("demo__echo")).allow
    [loaded] = setup.entries("policy.loaded")
    assert loaded.payload["revision"] == result.revision
    assert loaded.payload["previous_revision"] == before.revision
    assert loaded.payload["trigger"] == "sighup"
    assert loaded.payload["conformance"] == {
        "mode": "enforce",
        "cases": 1,
        "passed": 1,
        "remembered": False,
    }


async def test_an_unchanged_policy_is_not_reloaded(setup: Setup) -> None:
    (setup.policy / "gateway" / "decision_test.rego").write_text("package gateway_test\n")
    result = await setup.reloader().reload("sighup")
    assert result.status == "unchanged"
    assert setup.entries("policy.loaded") == [] and setup.entries("policy.rejected") == []


async def test_a_broken_module_is_rejected_and_the_old_policy_keeps_serving(
    setup: Setup,
) -> None:
    before = setup.engine.revision
    (setup.policy / "gateway" / "broken.rego").write_text("package gateway\n\nthis is not rego {\n")
    result = await setup.reloader().reload("watch")
    assert result.status == "rejected"
    assert "gateway/broken.rego:4: rego_parse_error" in (result.error or "")
    assert setup.engine.revision == before and setup.allows("demo__echo")
    [rejected] = setup.entries("policy.rejected")
    assert rejected.payload["revision"] == result.revision is not None
    assert rejected.payload["previous_revision"] == before
    assert rejected.payload["trigger"] == "watch"
    assert rejected.payload["error"]["code"] == "policy_load_failed"
    assert setup.entries("policy.loaded") == []


async def test_a_policy_failing_its_cases_is_rejected_under_enforce(setup: Setup) -> None:
    before = setup.engine.revision
    write_fixture_data(setup.policy, [ECHO])  # the case says whoami is allowed
    result = await setup.reloader().reload("sighup")
    assert result.status == "rejected" and "demo__whoami allowed" in (result.error or "")
    assert setup.engine.revision == before and setup.allows("demo__whoami")
    [rejected] = setup.entries("policy.rejected")
    assert rejected.payload["error"]["code"] == "policy_conformance_failed"
    assert {m["field"] for m in rejected.payload["error"]["mismatches"]} == {
        "allow",
        "reasons",
        "rule",
    }


async def test_under_warn_a_failing_policy_is_loaded(setup: Setup) -> None:
    write_fixture_data(setup.policy, [ECHO])
    reloader = setup.reloader(conformance=ConformanceConfig(on_start="warn"))
    result = await reloader.reload("sighup")
    assert result.status == "loaded" and not setup.allows("demo__whoami")
    [loaded] = setup.entries("policy.loaded")
    assert loaded.payload["conformance"] == {
        "mode": "warn",
        "cases": 1,
        "passed": 0,
        "remembered": False,
    }


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every fingerprint the watcher took, one per tick, in order."""
    taken: list[str | None] = []
    real = reload_module.fingerprint

    def counted(folders: Any) -> str | None:
        result = real(folders)
        taken.append(result)
        return result

    monkeypatch.setattr(reload_module, "fingerprint", counted)
    return taken


async def test_the_watcher_loads_changes_and_reports_a_broken_save_once(
    setup: Setup, ticks: list[str | None]
) -> None:
    reloader = setup.reloader(watch=True, watch_interval_s=0.05)
    async with anyio.create_task_group() as tasks:
        await reloader.start(tasks)
        write_fixture_data(setup.policy, [WHOAMI])
        await eventually_async(lambda: not setup.allows("demo__echo"), "the edit loaded")
        assert [e.payload["trigger"] for e in setup.entries("policy.loaded")] == ["watch"]

        serving = setup.engine.revision
        (setup.policy / "gateway" / "broken.rego").write_text("package gateway\n\nbroken(\n")
        await eventually_async(lambda: setup.entries("policy.rejected"), "the rejection")
        # Three more ticks, the last two of them over the same broken files, each done
        # (a tick's reload, if any, ends before the next tick's fingerprint): the same
        # broken files are not tried again.
        seen = len(ticks)
        await eventually_async(lambda: len(ticks) >= seen + 3, "three more ticks")
        assert len(set(ticks[seen:])) == 1
        assert len(setup.entries("policy.rejected")) == 1
        assert setup.engine.revision == serving

        (setup.policy / "gateway" / "broken.rego").unlink()
        write_fixture_data(setup.policy, [ECHO, WHOAMI])
        await eventually_async(lambda: setup.allows("demo__echo"), "the fix loaded")
        assert len(setup.entries("policy.loaded")) == 2
        reloader.stop()
        tasks.cancel_scope.cancel()


def test_fingerprint_sees_content_changes_and_ignores_other_files(tmp_path: Path) -> None:
    policy = write_fixture_policy(tmp_path / "policy", [ECHO])
    first = fingerprint([policy])
    (policy / "notes.txt").write_text("editor backup")
    assert fingerprint([policy]) == first
    write_fixture_data(policy, [WHOAMI])
    assert fingerprint([policy]) != first


def test_fingerprint_sees_a_file_replaced_with_its_size_and_mtime_kept(tmp_path: Path) -> None:
    # It never reads contents: a save that keeps the size and puts the mtime back (an
    # editor's atomic rename, `cp -p`, rsync -a) still changes the inode or the ctime.
    policy = write_fixture_policy(tmp_path / "policy", [ECHO])
    data = policy / "data.json"
    before = data.stat()
    first = fingerprint([policy])
    replacement = tmp_path / "data.json.new"
    replacement.write_bytes(data.read_bytes().replace(b"demo__echo", b"demo__ECHO"))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, data)
    assert data.stat().st_size == before.st_size
    assert data.stat().st_mtime_ns == before.st_mtime_ns
    assert fingerprint([policy]) != first


# --- remembered conformance passes (gateway.policy.conformance_memo) -------------------


@pytest.fixture
def case_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many cases each conformance run evaluated, one item per run."""
    runs: list[int] = []
    real = lifecycle.run_cases

    def counting(cases: Any, evaluate: Any, *, engine: str) -> Any:
        runs.append(len(cases))
        return real(cases, evaluate, engine=engine)

    monkeypatch.setattr(lifecycle, "run_cases", counting)
    return runs


async def test_a_restart_with_nothing_changed_remembers_the_pass(
    setup: Setup, tmp_path: Path, case_runs: list[int]
) -> None:
    config = EmbeddedPolicyConfig(path=setup.policy)
    memo = ConformanceMemo(tmp_path / "memo")
    await start_policy(config, setup.engine, setup.audit, memo=memo)
    await start_policy(config, EmbeddedEngine(setup.policy), setup.audit, memo=memo)
    assert case_runs == [1]
    first, second = setup.entries("policy.loaded")
    assert first.payload["conformance"]["remembered"] is False
    assert second.payload["conformance"] == {
        "mode": "enforce",
        "cases": 1,
        "passed": 1,
        "remembered": True,
    }


async def test_changed_cases_or_a_changed_policy_run_the_cases_again(
    setup: Setup, tmp_path: Path, case_runs: list[int]
) -> None:
    config = EmbeddedPolicyConfig(path=setup.policy)
    memo = ConformanceMemo(tmp_path / "memo")
    await start_policy(config, setup.engine, setup.audit, memo=memo)

    cases = [case("demo__whoami", True), case("demo__echo", True)]
    (setup.policy / "conformance" / "cases.json").write_text(json.dumps({"cases": cases}))
    await start_policy(config, setup.engine, setup.audit, memo=memo)

    write_fixture_policy(setup.policy, [ECHO, WHOAMI, {"role": "agent", "tool": "demo__x"}])
    await start_policy(config, EmbeddedEngine(setup.policy), setup.audit, memo=memo)
    assert case_runs == [1, 2, 2]
    await start_policy(config, EmbeddedEngine(setup.policy), setup.audit, memo=memo)
    assert case_runs == [1, 2, 2]  # that last pass is remembered


async def test_a_failing_run_is_never_remembered(
    setup: Setup, tmp_path: Path, case_runs: list[int]
) -> None:
    (setup.policy / "conformance" / "cases.json").write_text(
        json.dumps({"cases": [case("demo__whoami", False)]})
    )
    config = EmbeddedPolicyConfig(path=setup.policy, conformance=ConformanceConfig(on_start="warn"))
    memo = ConformanceMemo(tmp_path / "memo")
    await start_policy(config, setup.engine, setup.audit, memo=memo)
    await start_policy(config, setup.engine, setup.audit, memo=memo)
    assert case_runs == [1, 1]
    assert not list((tmp_path / "memo").glob("*"))


async def test_a_memo_folder_that_cannot_be_written_only_costs_the_next_run(
    setup: Setup, tmp_path: Path, case_runs: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    memo = ConformanceMemo(tmp_path / "not-a-folder" / "memo")
    config = EmbeddedPolicyConfig(path=setup.policy)
    await start_policy(config, setup.engine, setup.audit, memo=memo)
    await start_policy(config, setup.engine, setup.audit, memo=memo)
    assert case_runs == [1, 1]
    assert "could not remember the conformance verdict" in caplog.text
    assert len(setup.entries("policy.loaded")) == 2
