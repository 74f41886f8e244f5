"""The REST surface against its own OpenAPI document, with Schemathesis: for each role
(agent, approver, auditor) a bounded, seeded set of generated requests on every
operation; no answer is a server error, every status is one the document declares,
and every body matches the declared schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.modes import GenerationMode

from gateway.surfaces.openapi import build_openapi
from tests.support.processes import GatewayServer, McpUpstreamServer, write_policy

GRANTS = [
    {"role": "agent", "tool": "up__echo"},
    {"role": "agent", "tool": "up__write", "approval": {"approvers": ["role:approver"]}},
]
ROLES = {
    "agent": ("agent:fuzz", ("agent",)),
    "approver": ("user:fuzz-approver", ("approver",)),
    "auditor": ("user:fuzz-auditor", ("auditor",)),
}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Long polls are part of the contract, but a generated `wait` of 30 s per example would
# make the run a matter of minutes: capped (the parameter's bounds are still tested).
MAX_WAIT = "0.05"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    workdir = tmp_path_factory.mktemp("openapi")
    upstream = McpUpstreamServer.start(workdir)
    server = GatewayServer.configure(
        workdir / "gateway",
        upstreams=[{"name": "up", "url": upstream.url, "timeout_s": 10}],
        policy=write_policy(workdir, GRANTS),
    )
    # Held calls answer at once: the fuzzer calls the approval-needing tool too.
    server.config["approvals"] = {"hold_s": 0}
    server.start()
    yield server
    server.stop()
    upstream.process.stop()


@pytest.fixture(scope="module")
def served(gateway: GatewayServer) -> schemathesis.schemas.BaseSchema:
    """The document the gateway serves (not the one built here), as Schemathesis reads it."""
    return schemathesis.openapi.from_url(gateway.url + "/openapi.json")


# Known without a server: the document is built from the surfaces' models.
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, methods in build_openapi("http://gateway.test")["paths"].items()
    for method in methods
]


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_answer_is_declared_and_none_is_a_server_error(
    served: schemathesis.schemas.BaseSchema, gateway: GatewayServer, label: str
) -> None:
    operation = served.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"

    # Requests that fit the document, and requests that do not (which must be refused
    # with a declared 4xx, never a 5xx).
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
    @given(case=cases)
    def each(case: schemathesis.Case) -> None:
        if case.query and "wait" in case.query:
            case.query["wait"] = MAX_WAIT
        # Each generated request as each role: what one may do, another is refused, and
        # both answers must be declared.
        for sub, roles in ROLES.values():
            headers = gateway.headers(sub=sub, roles=roles)
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

    each()
