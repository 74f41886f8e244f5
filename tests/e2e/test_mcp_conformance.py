"""The official MCP conformance suite, against our conformance upstream directly and
through the gateway (issue 12, "Tests that must exist").

Directly: every server scenario a revision requires passes against
tests/support/conformance_upstream.py; what cannot pass directly is listed, with its
reason, in baselines/conformance_direct.yml (expected failures; an entry that passes
fails the test as stale).

Through the gateway: the same scenarios, with the gateway in front of that upstream
and a loopback proxy (tests/support/bearer_proxy.py) adding the bearer token, since the
suite cannot send one. Rule: every scenario that passes directly passes through the
gateway. What does not yet is listed in baselines/conformance_gateway.yml with its
reason, per target:

- ``per-upstream``: ``/mcp/conf``, the upstream alone and unprefixed (issue 12, part 6);
- ``aggregated``: ``/mcp``, with the proxy adding and removing the ``conf__`` prefix of
  tool names (only tool names: resources and prompts pass as they are).

As a feature lands, its scenarios start passing and the test fails on the stale
entries: remove them, and the baseline shrinks to nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.conformance import (
    REVISIONS,
    judge,
    load_baseline,
    required_server_scenarios,
    run_suite,
    unscored_server_scenarios,
)
from tests.support.peers import BearerProxy, ConformanceUpstream
from tests.support.processes import GatewayServer, upstream_grants, write_policy

BASELINES = Path(__file__).parent / "baselines"
DIRECT = BASELINES / "conformance_direct.yml"
GATEWAY = BASELINES / "conformance_gateway.yml"
UPSTREAM = "conf"
TARGETS = {"per-upstream": f"/mcp/{UPSTREAM}", "aggregated": "/mcp"}


def scenarios(revision: str) -> list[str]:
    return required_server_scenarios(revision) + unscored_server_scenarios(revision)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def upstream(workdir: Path) -> Iterator[ConformanceUpstream]:
    server = ConformanceUpstream.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(workdir: Path, upstream: ConformanceUpstream) -> Iterator[GatewayServer]:
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": UPSTREAM, "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(workdir, upstream_grants(UPSTREAM)),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxies(workdir: Path, gateway: GatewayServer) -> Iterator[dict[str, BearerProxy]]:
    token = gateway.token(sub="agent:conformance", ttl_s=3600)
    started = {
        "per-upstream": BearerProxy.start(workdir, gateway.url, token),
        "aggregated": BearerProxy.start(workdir, gateway.url, token, tool_prefix=UPSTREAM),
    }
    yield started
    for proxy in started.values():
        proxy.process.stop()


@pytest.mark.parametrize("revision", REVISIONS)
def test_the_conformance_upstream_passes_every_required_scenario_directly(
    revision: str, upstream: ConformanceUpstream, workdir: Path
) -> None:
    expected = load_baseline(DIRECT, revision)
    assert not set(expected) & set(required_server_scenarios(revision)), (
        "a required scenario may not be an expected failure of the upstream itself"
    )
    run = run_suite(
        upstream.url, revision, workdir / f"direct-{revision}", expected_failures=expected
    )
    problems = judge(run, scenarios(revision), expected)
    assert not problems, "\n".join(problems) + "\n\n" + run.output[-4000:]
    assert run.returncode == 0, run.output[-4000:]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("revision", REVISIONS)
def test_every_scenario_that_passes_directly_passes_through_the_gateway(
    revision: str, target: str, proxies: dict[str, BearerProxy], workdir: Path
) -> None:
    # What passes directly must pass, unless the gateway baseline says why not yet;
    # what fails directly may fail here too (the direct test keeps that list honest).
    direct = load_baseline(DIRECT, revision)
    expected = load_baseline(GATEWAY, target, revision)
    overlap = {e.split(":", 1)[0] for e in expected} & set(direct)
    assert not overlap, f"already expected to fail directly, list them only there: {overlap}"
    url = proxies[target].url + TARGETS[target]
    run = run_suite(url, revision, workdir / f"gateway-{target}-{revision}")
    problems = judge(run, scenarios(revision), expected, tolerated=direct)
    assert not problems, "\n".join(problems) + "\n\n" + run.output[-4000:]
