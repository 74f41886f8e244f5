"""server-everything, the MCP reference server, as a real upstream behind the gateway
(issue 12, "Tests that must exist"), driven by two real clients.

The upstream: ``@modelcontextprotocol/server-everything`` from tests/peers, once over
stdio (the gateway starts it) and once over Streamable HTTP, each behind its own
gateway as upstream ``ev``. The clients: the TypeScript SDK v2
(tests/peers/clients/ts_v2_client.mjs, on the Node 22 of tests/peers) and the Python
SDK (tests/e2e/everything_cases.py), in both protocol eras (``legacy``: the 2025-11-25
handshake; ``2026-07-28``: sessionless). The endpoints: the aggregated ``/mcp`` (names
``ev__…``) and ``/mcp/ev`` (the upstream alone, unprefixed; issue 12 part 6).

Each case is one feature (everything_cases.CASES): tools (list, ``echo``, ``get-sum``),
resources (list, templates, read), subscribe (and receive an update), prompts (list,
get), completion, logging (set a level, receive a message), and the tools that elicit,
sample and ask for roots, with the client answering.

What does not work through the gateway yet is listed in baselines/everything.yml: a
case matching an entry must fail (reported as xfail with the entry's reason), and
fails the test as stale when it passes; a case matching no entry must pass.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.everything_cases import CASES, run_case
from tests.support.peers import EverythingServer, everything_stdio_command, run_node_client
from tests.support.processes import GatewayServer, upstream_grants, write_policy

pytestmark = pytest.mark.anyio

BASELINE = Path(__file__).parent / "baselines" / "everything.yml"
UPSTREAM = "ev"
CLIENTS = ("ts-v2", "python")
ERAS = ("legacy", "2026-07-28")
TRANSPORTS = ("stdio", "http")
ENDPOINTS = {"aggregated": "/mcp", "per-upstream": f"/mcp/{UPSTREAM}"}


def baseline() -> dict[str, str]:
    entries: dict[str, str] = yaml.safe_load(BASELINE.read_text()) or {}
    for pattern, reason in entries.items():
        assert isinstance(reason, str) and reason.strip(), f"{BASELINE}: {pattern} needs a reason"
    return entries


def expected_failure(case_id: str) -> tuple[str, str] | None:
    """The first baseline entry (pattern, reason) matching the case, if any."""
    for pattern, reason in baseline().items():
        if fnmatch.fnmatchcase(case_id, pattern):
            return pattern, reason
    return None


def _describe(failure: BaseException) -> str:
    """The innermost error, in one short line (task groups wrap the real one)."""
    while isinstance(failure, BaseExceptionGroup) and failure.exceptions:
        failure = failure.exceptions[0]
    first = (str(failure).strip().splitlines() or [""])[0]
    return f"{type(failure).__name__}: {first[:120]}"


def check(case: str, seen: dict[str, Any], prefix: str) -> None:
    """What a case must have seen to pass, the same for every client."""
    if case == "tools":
        assert prefix + "echo" in seen["tools"]
        assert "hello from" in seen["echo"] and "5" in seen["sum"]
    elif case == "resources":
        assert seen["read"] and seen["templates"]
    elif case == "prompts":
        assert seen["simple"] >= 1 and seen["args"] is True
    elif case == "completion":
        assert "Engineering" in seen["values"]
    elif case == "logging":
        assert seen["level"]
    elif case == "elicitation":
        assert seen["asked"] >= 1 and "Ada Lovelace" in seen["result"]
    elif case == "sampling":
        assert seen["asked"] >= 1 and "sampled by the test client" in seen["result"]
    elif case == "roots":
        # server-everything asks once per upstream session and keeps the answer; each
        # 2025-11-25 client has an upstream session of its own (decision 0034), so each
        # is asked, and the roots it lists are that client's, through the gateway. A
        # 2026-07-28 client is given the upstream session of its principal (decision
        # 0043), which this principal's client of an earlier case (a batch runs every
        # case as one principal) may have been asked on already: the roots it lists are
        # still only ever this principal's, answered by its client through the gateway.
        assert "gateway-test" in seen["result"]
        assert seen["asked"] >= 1 or seen["era"] == "2026-07-28"
    else:
        assert case == "subscribe" and seen["subscribed"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("everything")


@pytest.fixture(scope="module")
def everything_http(workdir: Path) -> Iterator[EverythingServer]:
    server = EverythingServer.start(workdir)
    yield server
    server.process.stop()


def _gateway(workdir: Path, name: str, upstream: dict[str, Any]) -> GatewayServer:
    return GatewayServer.configure(
        workdir / name,
        upstreams=[{"name": UPSTREAM, "timeout_s": 10, **upstream}],
        policy=write_policy(workdir / name, upstream_grants(UPSTREAM)),
    ).start()


@pytest.fixture(scope="module")
def gateways(
    workdir: Path, everything_http: EverythingServer
) -> Iterator[dict[str, GatewayServer]]:
    started = {
        "stdio": _gateway(
            workdir, "gw-stdio", {"transport": "stdio", "command": everything_stdio_command()}
        ),
        "http": _gateway(workdir, "gw-http", {"url": everything_http.url}),
    }
    yield started
    for gateway in started.values():
        gateway.stop()


_TS_RUNS: dict[tuple[str, str, str], dict[str, Any]] = {}


class ClientCaseFailed(AssertionError):
    pass


class _Failed:
    """A case that failed in a batch: raises its error when used."""

    def __init__(self, error: str) -> None:
        self.error = error

    def __getitem__(self, key: str) -> Any:
        raise ClientCaseFailed(self.error)


def ts_v2_batch(
    gateway: GatewayServer, url: str, era: str, prefix: str, token: str
) -> dict[str, Any]:
    """Every case of one (gateway, endpoint, era) in one Node process (a process per case
    would spend most of the time starting Node), each on its own connection."""
    key = (gateway.url, url, era)
    if key not in _TS_RUNS:
        lines = run_node_client(
            "ts_v2_client.mjs", [url, era, ",".join(CASES), prefix], env={"MCP_TOKEN": token}
        )
        _TS_RUNS[key] = {
            line["case"]: line["seen"] if line["ok"] else _Failed(line["error"]) for line in lines
        }
    return _TS_RUNS[key]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_client_uses_server_everything_through_the_gateway(
    client: str,
    era: str,
    transport: str,
    endpoint: str,
    case: str,
    gateways: dict[str, GatewayServer],
) -> None:
    gateway = gateways[transport]
    url = gateway.url + ENDPOINTS[endpoint]
    prefix = f"{UPSTREAM}__" if endpoint == "aggregated" else ""
    token = gateway.token(sub=f"agent:{client}")
    case_id = f"{client}/{era}/{transport}/{endpoint}/{case}"
    expected = expected_failure(case_id)
    try:
        if client == "ts-v2":
            seen = ts_v2_batch(gateway, url, era, prefix, token)[case]
        else:
            seen = await run_case(url, token, era, case, prefix)
        check(case, seen, prefix)
    except Exception as failure:
        if expected is None:
            raise
        pytest.xfail(f"{expected[1]} [{expected[0]}]: {_describe(failure)}")
    if expected is not None:
        pytest.fail(
            f"{case_id} passed, but {BASELINE.name} expects it to fail ({expected[0]}: "
            f"{expected[1]}): the entry is stale; narrow or remove it"
        )
