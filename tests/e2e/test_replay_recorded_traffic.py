"""`gateway policy replay` on traffic recorded by a real gateway: the same policy finds
no difference, a known edit finds exactly the differences it introduces."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.audit import read_entries
from gateway.cli import main
from gateway.store import create_engine
from tests.support.fixture_policy import write_fixture_policy
from tests.support.processes import REPO, GatewayServer, McpUpstreamServer
from tests.support.waiting import eventually

ECHO = {"role": "agent", "tool": "up__echo"}
LOGIN = {"role": "agent", "tool": "up__login"}
WRITE = {"role": "agent", "tool": "up__write", "approvers": ["role:ops"]}
WHOAMI = {"role": "agent", "tool": "up__whoami"}

# (tool, arguments) in the order they are sent; the comment says what policy decides.
TRAFFIC: list[tuple[str, dict[str, Any]]] = [
    ("up__echo", {"text": "one"}),  # allow
    ("up__echo", {"text": "two"}),  # allow
    ("up__login", {"user": "ann", "api_key": "sk-live-1"}),  # allow, api_key redacted
    ("up__write", {"key": "k", "value": "v"}),  # approval required
    ("up__whoami", {}),  # deny: no grant
    ("up__echo", {"text": 5}),  # refused before policy: invalid arguments
    ("up__echo", {"text": "x", "explode": "x"}),  # policy error: arguments withheld
]


@dataclass
class Recorded:
    gateway: GatewayServer
    policy: Path
    request_ids: list[str]
    decision_ts: dict[str, str]  # request id -> ts of its call.decision entry


@pytest.fixture(scope="module")
def recorded(workdir: Path, mcp_upstream: McpUpstreamServer) -> Iterator[Recorded]:
    policy = write_fixture_policy(workdir / "replay-policy", [ECHO, LOGIN, WRITE])
    gateway = GatewayServer.configure(
        workdir / "replay-gateway",
        upstreams=[{"name": "up", "url": mcp_upstream.url, "timeout_s": 5}],
        policy_config={"path": str(policy), "watch": False},
    )
    gateway.config["approvals"] = {"hold_s": 0}
    gateway.start()
    request_ids = []
    try:
        for tool, arguments in TRAFFIC:
            response = httpx.post(
                f"{gateway.url}/v1/tools/{tool}/call",
                json={"arguments": arguments},
                headers=gateway.headers(sub="agent:replayed"),
                timeout=10,
            )
            request_ids.append(response.headers["x-request-id"])
            # Its entries are stamped (to the millisecond) before it answered; the next
            # call's will be later once the clock shows a later millisecond: distinct
            # timestamps, for --since/--until.
            answered_ms = time.time_ns() // 1_000_000
            eventually(
                lambda: time.time_ns() // 1_000_000 > answered_ms,  # noqa: B023 (used at once)
                "the next millisecond",
                interval_s=0.001,
            )
    finally:
        gateway.stop()
    database = create_engine(gateway.config["storage"]["url"])
    decisions = {e.ref: e.ts for e in read_entries(database, kind="call.decision")}
    database.dispose()
    assert set(request_ids) <= set(decisions)
    yield Recorded(gateway, policy, request_ids, decisions)


def replay_args(recorded: Recorded, policy: Path, *args: str) -> list[str]:
    return [
        "policy",
        "replay",
        "--policy",
        str(policy),
        "--config",
        str(recorded.gateway.config_path),
        *args,
    ]


def replay(recorded: Recorded, policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in process (the real CLI entry point; a process start per run would
    make this module take a minute); `test_the_command_runs_as_a_process` covers
    the process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = replay_args(recorded, policy, *args)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = int(exit_.code or 0)
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


def replay_json(recorded: Recorded, policy: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = replay(recorded, policy, "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def candidate(workdir: Path, name: str, grants: list[dict[str, Any]], **settings: Any) -> Path:
    return write_fixture_policy(workdir / "candidates" / name, grants, **settings)


def changes(report: dict[str, Any]) -> dict[str, list[str]]:
    """request id -> the changes found for it."""
    out: dict[str, list[str]] = {}
    for difference in report["differences"]:
        out.setdefault(difference["request_id"], []).append(difference["change"])
    return out


def test_the_same_policy_finds_no_difference(recorded: Recorded) -> None:
    code, report = replay_json(recorded, recorded.policy, "--fail-on", "any")
    assert code == 0
    assert report["replayed"] == 5
    assert report["counts"]["unchanged"] == 5
    assert report["differences"] == []
    assert report["skipped"] == {"pre_policy": 1, "withheld": 1, "no_input": 0, "erased": 0}
    assert report["redacted_inputs"] == 1
    assert report["failed"] is False


def test_a_known_edit_finds_exactly_its_differences(recorded: Recorded, workdir: Path) -> None:
    # Revoke echo, add approval to login, drop the approval of write, grant whoami.
    edited = candidate(
        workdir,
        "edited",
        [{**LOGIN, "approvers": ["role:security"]}, {**WRITE, "approvers": []}, WHOAMI],
    )
    code, report = replay_json(recorded, edited)
    assert code == 0  # no --fail-on
    echo_one, echo_two, login, write, whoami, *_ = recorded.request_ids
    assert changes(report) == {
        echo_one: ["allow_to_deny"],
        echo_two: ["allow_to_deny"],
        login: ["approval_added"],
        write: ["approval_dropped"],
        whoami: ["deny_to_allow"],
    }
    counts = report["counts"]
    assert (counts["allow_to_deny"], counts["deny_to_allow"]) == (2, 1)
    assert (counts["approval_added"], counts["approval_dropped"], counts["unchanged"]) == (1, 1, 0)
    first = report["differences"][0]
    assert first["principal"] == "agent:replayed" and first["tool"] == "up__echo"
    assert first["old"]["rule"] == "grant" and first["new"]["rule"] == "default_deny"
    assert first["old"]["revision"].startswith("sha256:")
    # The login input was replayed as recorded: redacted, yet still redacted again.
    login_change = next(d for d in report["differences"] if d["request_id"] == login)
    assert login_change["new"]["obligations"]["redact"] == ["/arguments/api_key"]
    assert "sk-live-1" not in json.dumps(report)

    for fail_on in ("allow", "deny", "any"):
        assert replay(recorded, edited, "--fail-on", fail_on).returncode == 1, fail_on


def test_fail_on_tells_looser_from_stricter(recorded: Recorded, workdir: Path) -> None:
    stricter = candidate(workdir, "stricter", [{**LOGIN, "approvers": ["role:ops"]}, WRITE])
    assert replay(recorded, stricter, "--fail-on", "allow").returncode == 0
    assert replay(recorded, stricter, "--fail-on", "deny").returncode == 1
    looser = candidate(workdir, "looser", [ECHO, LOGIN, WRITE, WHOAMI])
    assert replay(recorded, looser, "--fail-on", "deny").returncode == 0
    assert replay(recorded, looser, "--fail-on", "allow").returncode == 1


def test_changed_details_only_are_informational(recorded: Recorded, workdir: Path) -> None:
    longer_ttl = candidate(workdir, "ttl", [ECHO, LOGIN, WRITE], ttl_s=7200)
    code, report = replay_json(recorded, longer_ttl, "--fail-on", "any")
    assert code == 0
    assert changes(report) == {recorded.request_ids[3]: ["details_changed"]}


def test_since_and_until_select_a_window(recorded: Recorded, workdir: Path) -> None:
    edited = candidate(workdir, "window", [LOGIN, WRITE, WHOAMI])  # echo revoked, whoami granted
    echo_one, echo_two, login, _, whoami, *_ = recorded.request_ids
    code, report = replay_json(recorded, edited, "--until", recorded.decision_ts[login])
    assert (code, report["replayed"]) == (0, 2)
    assert set(changes(report)) == {echo_one, echo_two}
    code, report = replay_json(
        recorded, edited, "--since", recorded.decision_ts[login], "--fail-on", "allow"
    )
    assert code == 1  # whoami is in the window
    assert set(changes(report)) == {whoami}
    assert report["replayed"] == 3
    code, report = replay_json(recorded, edited, "--limit", "1")
    assert (report["replayed"], set(changes(report))) == (1, {echo_one})


def test_the_command_runs_as_a_process_and_lists_each_difference(
    recorded: Recorded, workdir: Path
) -> None:
    edited = candidate(workdir, "text", [ECHO, LOGIN, WRITE, WHOAMI])
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *replay_args(recorded, edited, "--fail-on", "allow")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    whoami = recorded.request_ids[4]
    assert "deny → allow" in result.stdout
    line = next(row for row in result.stdout.splitlines() if whoami in row)
    assert "agent:replayed" in line and "up__whoami" in line
    assert "refused before policy" in result.stdout
    assert "1 differences match --fail-on allow" in result.stdout


def test_usage_errors_exit_2(recorded: Recorded, workdir: Path) -> None:
    assert replay(recorded, recorded.policy, "--since", "yesterday").returncode == 2
    assert replay(recorded, recorded.policy, "--fail-on", "maybe").returncode == 2
    broken = candidate(workdir, "broken", [ECHO])
    (broken / "gateway" / "broken.rego").write_text("package gateway\n\n{{\n")
    result = replay(recorded, broken)
    assert result.returncode == 2 and "gateway/broken.rego:" in result.stderr
    assert "does not compile" in result.stderr
