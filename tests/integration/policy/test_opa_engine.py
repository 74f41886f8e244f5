"""The OPA engine against real OPA servers on loopback (the pinned binary).

The same policy folder is loaded by OPA and by the embedded engine, and the same
inputs (built by `build_input`) must get the same decisions from both. Failure cases
use small policies written for the case: a built-in error, a rule conflict, a
malformed result, a result that is undefined, and a decision that takes seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway.cli import main as gateway_cli
from gateway.config import OpaPolicyConfig
from gateway.errors import PolicyUnavailable
from gateway.policy import build_input, decide
from gateway.policy.decision import MalformedDecision
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import FAIL_CLOSED_RULE
from gateway.policy.listing import VisibleTools
from gateway.policy.opa import DecisionUndefined, OpaEngine, OpaErrorResponse, OpaTimeout
from gateway.types import Actor, ClientInfo, Principal, ToolDefinition
from tests.support.deciding import decider_for
from tests.support.gate import Gate
from tests.support.opa import OpaServer, opa_binary
from tests.support.processes import POLICIES, free_port

pytestmark = pytest.mark.anyio

# A decision per `input.arguments.mode`, each one a way for OPA to fail the contract.
BROKEN_POLICY = """package gateway

import rego.v1

decision := {"allow": to_number(input.arguments.n) > 0} if input.arguments.mode == "builtin"

decision := {"allow": "yes"} if input.arguments.mode == "malformed"

decision := {"allow": true} if input.arguments.mode == "conflict"

decision := {"allow": false} if input.arguments.mode == "conflict"

# mode "slow": allow, once the test's gate lets its http.send through (at the end of
# the module): slower than any deadline here, however fast the machine.
decision := {"allow": true, "reasons": ["slow"]} if {
	input.arguments.mode == "slow"
	http.send({"method": "GET", "url": "%s", "timeout": "600s"}).status_code == 200
}
"""


# A deadline a healthy OPA meets on a busy machine; the slow cases set their own.
DEADLINE_S = 10


def opa_config(url: str, timeout_ms: int = DEADLINE_S * 1000) -> OpaPolicyConfig:
    return OpaPolicyConfig(engine="opa", url=url, timeout_ms=timeout_ms)


def policy_copy(directory: Path) -> Path:
    """The shipped policy as both engines load it: no Rego tests, no conformance cases."""
    target = directory / "policy"
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("*_test.rego", "conformance"))
    return target


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("opa-engine")


@pytest.fixture(scope="module")
def policy_dir(workdir: Path) -> Path:
    return policy_copy(workdir)


@pytest.fixture(scope="module")
def opa(workdir: Path, policy_dir: Path) -> Iterator[OpaServer]:
    server = OpaServer([policy_dir], workdir / "opa.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broken_opa(workdir: Path) -> Iterator[OpaServer]:
    folder = workdir / "broken"
    folder.mkdir()
    gate = Gate()
    (folder / "broken.rego").write_text(BROKEN_POLICY % gate.url)
    server = OpaServer([folder], workdir / "opa-broken.log").start()
    yield server
    server.stop()
    gate.close()


@pytest.fixture(scope="module")
def embedded(policy_dir: Path) -> EmbeddedEngine:
    return EmbeddedEngine(policy_dir)


def tool(name: str) -> ToolDefinition:
    server, upstream_tool = name.split("__", 1)
    return ToolDefinition(
        name=name,
        server=server,
        upstream_tool=upstream_tool,
        description=None,
        input_schema={"type": "object"},
        output_schema=None,
        annotations={"readOnlyHint": True},
        risk="low",
        definition_hash="0" * 64,
    )


def policy_input(
    tool_name: str,
    arguments: dict[str, Any],
    *,
    roles: tuple[str, ...] = ("agent",),
    chain: tuple[Actor, ...] = (),
    action: Any = "tools/call",
) -> dict[str, Any]:
    return build_input(
        principal=Principal(sub="agent:test", iss="dev", roles=roles, act_chain=chain),
        action=action,
        request_id="req_opa_test",
        transport="rest",
        tool=tool(tool_name),
        arguments=arguments,
        client=ClientInfo(ip="127.0.0.1", user_agent="pytest"),
        now=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    )


CASES = {
    "allow": policy_input("demo__echo", {"text": "hi"}),
    "deny_no_role": policy_input("demo__echo", {"text": "hi"}, roles=()),
    "deny_constraint": policy_input("demo__read_file", {"path": "../etc/passwd"}),
    "allow_constraint": policy_input("demo__read_file", {"path": "notes/today.txt"}),
    "approval": policy_input("demo__delete_records", {"table": "orders", "ids": [1]}),
    "redaction": policy_input("demo__echo", {"text": "hi", "api_key": "s3cret"}),
    "escapes": policy_input("demo__read_file", {"path": 'a\\b "quoted"\n'}),
    "long_chain": policy_input(
        "demo__echo", {"text": "x"}, chain=tuple(Actor(f"user:{i}") for i in range(6))
    ),
    "list_visible": policy_input("demo__delete_records", {}, action="tools/list"),
    "list_hidden": policy_input("demo__echo", {}, roles=(), action="tools/list"),
}


def contract(decision: Any) -> dict[str, Any]:
    """The policy's answer without where it came from."""
    return {
        k: v
        for k, v in decision.to_dict().items()
        if k not in ("engine", "revision", "decision_id")
    }


@pytest.mark.parametrize("case", sorted(CASES))
async def test_decisions_equal_the_embedded_engines(
    case: str, opa: OpaServer, embedded: EmbeddedEngine
) -> None:
    engine = OpaEngine(opa_config(opa.url))
    try:
        decision = await engine.evaluate(CASES[case])
    finally:
        await engine.close()
    assert contract(decision) == contract(embedded.evaluate_sync(CASES[case]))
    assert decision.engine == "opa"
    assert decision.decision_id  # decision logging is on in the test server
    # Plain files: OPA knows no revision, so the engine names the server.
    assert decision.revision == engine.revision == f"opa:{opa.url}"


async def test_a_list_is_one_decision_on_both_engines(
    opa: OpaServer, embedded: EmbeddedEngine
) -> None:
    # data.gateway.visible, the same contract on the sidecar and the embedded engine.
    catalog = [tool("demo__echo"), tool("demo__read_file"), tool("other__lookup")]
    lists = VisibleTools()
    engine = OpaEngine(opa_config(opa.url))
    try:
        for roles, expected in [(("agent",), ["demo__echo", "demo__read_file"]), ((), [])]:
            principal = Principal(sub="agent:test", iss="dev", roles=roles)
            on_opa = await lists.visible(decider_for(engine), principal, catalog)
            on_wasm = await lists.visible(decider_for(embedded), principal, catalog)
            assert [t.name for t in on_opa] == [t.name for t in on_wasm] == expected
    finally:
        await engine.close()


async def test_without_bundles_a_list_is_asked_again_after_a_change_pushed_to_opa(
    workdir: Path, policy_dir: Path
) -> None:
    """OPA serving plain files reports no revision: a change pushed through its REST
    API leaves ``opa:<url>`` as it was, so no list answer may be kept under it."""
    server = OpaServer([policy_dir], workdir / "opa-pushed.log").start()
    engine = OpaEngine(opa_config(server.url))
    lists = VisibleTools()
    principal = Principal(sub="agent:test", iss="dev", roles=("agent",))
    catalog = [tool("demo__echo"), tool("demo__read_file")]
    try:
        assert await engine.ready()
        assert not engine.revision_follows_policy
        shown = await lists.visible(decider_for(engine), principal, catalog)
        assert [t.name for t in shown] == ["demo__echo", "demo__read_file"]
        async with httpx.AsyncClient() as client:
            pushed = await client.put(f"{server.url}/v1/data/gateway_data/grants", json=[])
        assert pushed.status_code == 204, pushed.text
        assert await lists.visible(decider_for(engine), principal, catalog) == []
        assert engine.revision == f"opa:{server.url}"  # unchanged, as OPA knows none
    finally:
        await engine.close()
        server.stop()


async def test_decision_ids_match_opa_decision_log_and_differ(opa: OpaServer) -> None:
    engine = OpaEngine(opa_config(opa.url))
    try:
        decisions = []
        async with anyio.create_task_group() as tasks:
            for _ in range(40):  # concurrent: several pooled connections at once

                async def one() -> None:
                    decisions.append(await engine.evaluate(CASES["allow"]))

                tasks.start_soon(one)
    finally:
        await engine.close()
    ids = {d.decision_id for d in decisions}
    assert len(decisions) == len(ids) == 40
    assert all(d.allow for d in decisions)
    log = opa.process.log() if opa.process else ""
    assert next(iter(ids)) in log


async def test_bundle_revision_is_recorded(workdir: Path, policy_dir: Path) -> None:
    bundle = workdir / "bundle.tar.gz"
    await anyio.run_process(
        [opa_binary(), "build", "-b", str(policy_dir), "--revision", "rev-42", "-o", str(bundle)]
    )
    server = OpaServer([bundle], workdir / "opa-bundle.log", extra_args=["--bundle"]).start()
    engine = OpaEngine(opa_config(server.url))
    try:
        assert engine.revision == f"opa:{server.url}"  # nothing asked yet
        assert await engine.ready()
        assert engine.revision == "rev-42"  # read once at the first readiness check
        assert engine.revision_follows_policy
        decision = await engine.evaluate(CASES["allow"])
        assert decision.revision == "rev-42" and decision.allow

        # The same address now serving plain files: no stale bundle revision.
        server.stop()
        server = OpaServer([policy_dir], workdir / "opa-bundle.log", port=server.port).start()
        decision = await engine.evaluate(CASES["allow"])
        assert decision.revision == engine.revision == f"opa:{server.url}"
        assert not engine.revision_follows_policy
    finally:
        await engine.close()
        server.stop()


async def test_strict_builtin_error_is_a_policy_error(broken_opa: OpaServer) -> None:
    engine = OpaEngine(opa_config(broken_opa.url))
    try:
        with pytest.raises(OpaErrorResponse) as raised:
            await engine.evaluate({"arguments": {"mode": "builtin", "n": "not a number"}})
        assert raised.value.message.startswith(f"OPA at {broken_opa.url} returned HTTP 500: ")
        assert "to_number" in raised.value.message
        builtin = {"arguments": {"mode": "builtin", "n": "x"}}
        decision = await decide(engine, builtin, timeout_s=DEADLINE_S)
        assert not decision.allow and decision.rule == FAIL_CLOSED_RULE
        assert "to_number" in decision.reasons[0]
        assert decision.reasons[0].endswith("denied (fail closed)")
    finally:
        await engine.close()


async def test_rule_conflict_and_malformed_result_are_policy_errors(
    broken_opa: OpaServer,
) -> None:
    engine = OpaEngine(opa_config(broken_opa.url))
    try:
        with pytest.raises(OpaErrorResponse, match=r"HTTP 500: .*conflict"):
            await engine.evaluate({"arguments": {"mode": "conflict"}})
        with pytest.raises(MalformedDecision, match="allow"):
            await engine.evaluate({"arguments": {"mode": "malformed"}})
    finally:
        await engine.close()


async def test_undefined_decision_fails_closed(broken_opa: OpaServer) -> None:
    engine = OpaEngine(opa_config(broken_opa.url))
    try:
        with pytest.raises(DecisionUndefined, match=r"data\.gateway\.decision is undefined"):
            await engine.evaluate({"arguments": {"mode": "none of the above"}})
    finally:
        await engine.close()


async def test_server_without_the_gateway_package_fails_closed(workdir: Path) -> None:
    server = OpaServer([], workdir / "opa-empty.log").start()
    engine = OpaEngine(opa_config(server.url))
    try:
        assert await engine.ready()  # a healthy OPA, just without our policy
        decision = await decide(engine, CASES["allow"], timeout_s=DEADLINE_S)
        assert not decision.allow and decision.rule == FAIL_CLOSED_RULE
        assert "undefined" in decision.reasons[0] and server.url in decision.reasons[0]
    finally:
        await engine.close()
        server.stop()


async def test_slow_decision_times_out_and_the_engine_recovers(broken_opa: OpaServer) -> None:
    engine = OpaEngine(opa_config(broken_opa.url, timeout_ms=100))
    try:
        # OPA does not answer before the end of the module: only the timeout ends this.
        with pytest.raises(OpaTimeout, match=r"did not answer within 100 ms"):
            await engine.evaluate({"arguments": {"mode": "slow"}})
        # Through `decide` with the same budget (as the pipeline calls it): normally the
        # engine's own reason; when the event loop lags past both deadlines at once,
        # decide's. Both name OPA.
        # No answer is unavailability, not a denial (ADR 0032).
        with pytest.raises(PolicyUnavailable) as refused:
            await decide(engine, {"arguments": {"mode": "slow"}}, timeout_s=0.1)
        assert refused.value.message.split(";")[0] in (
            f"OPA at {broken_opa.url} did not answer within 100 ms",
            "policy engine opa did not answer within 100 ms",
        )
        # The abandoned connections were discarded, not reused mid-response.
        with pytest.raises(MalformedDecision):
            await engine.evaluate({"arguments": {"mode": "malformed"}})
    finally:
        await engine.close()


async def test_ready_follows_opa_and_decisions_recover_after_a_restart(
    workdir: Path, policy_dir: Path
) -> None:
    port = free_port()
    server = OpaServer([policy_dir], workdir / "opa-restart.log", port=port).start()
    engine = OpaEngine(opa_config(server.url))
    try:
        assert await engine.ready()
        assert (await engine.evaluate(CASES["allow"])).allow
        assert engine._client._idle  # a pooled connection that the kill leaves stale
        server.kill()
        assert not await engine.ready()
        with pytest.raises(PolicyUnavailable, match=f"OPA at {server.url} is unreachable"):
            await decide(engine, CASES["allow"], timeout_s=DEADLINE_S)

        server = OpaServer([policy_dir], workdir / "opa-restart.log", port=port).start()
        assert await engine.ready()
        assert (await engine.evaluate(CASES["allow"])).allow
    finally:
        await engine.close()
        server.stop()


async def test_unreachable_opa_is_not_ready_and_unavailable() -> None:
    engine = OpaEngine(opa_config(f"http://127.0.0.1:{free_port()}"))
    try:
        assert not await engine.ready()
        with pytest.raises(PolicyUnavailable, match="unreachable: cannot connect: connection"):
            await decide(engine, CASES["allow"], timeout_s=DEADLINE_S)
    finally:
        await engine.close()


async def test_push_to_an_empty_opa_then_decisions_work(
    workdir: Path, policy_dir: Path, embedded: EmbeddedEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    server = OpaServer([], workdir / "opa-push.log").start()
    engine = OpaEngine(opa_config(server.url))
    try:
        with pytest.raises(DecisionUndefined):
            await engine.evaluate(CASES["allow"])
        status = gateway_cli(["policy", "push", "--url", server.url, "--policy", str(policy_dir)])
        out = capsys.readouterr().out
        assert status == 0, out
        assert "package gateway as policy push/gateway:" in out
        assert "    gateway/decision.rego" in out and "data    data.gateway_data" in out
        assert "_test.rego" not in out
        for case in ("allow", "deny_constraint", "approval", "redaction"):
            decision = await engine.evaluate(CASES[case])
            assert contract(decision) == contract(embedded.evaluate_sync(CASES[case]))
    finally:
        await engine.close()
        server.stop()


def test_push_reports_opas_compile_error(
    workdir: Path, opa: OpaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = workdir / "bad-policy"
    folder.mkdir()
    (folder / "bad.rego").write_text("package scratch\n\nimport rego.v1\n\nx := y\n")
    status = gateway_cli(["policy", "push", "--url", opa.url, "--policy", str(folder)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"OPA at {opa.url} refused package scratch (bad.rego)" in err
    assert "bad.rego:5: var y is unsafe" in err  # OPA's own message and place


def test_push_to_unreachable_opa_says_so(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status = gateway_cli(["policy", "push", "--url", url, "--policy", str(policy_dir)])
    assert status == 1
    assert f"OPA at {url} is unreachable" in capsys.readouterr().err
