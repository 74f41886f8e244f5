"""Protected by default: every route of a built gateway answers 401 without a token,
except the explicit public paths, and that list names only routes that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.app import build_app
from gateway.config import parse_config
from gateway.identity import generate_dev_issuer
from gateway.surfaces.auth import PUBLIC_PATHS, PUBLIC_PREFIXES
from tests.support.processes import REPO


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    # Built, not started: routing and middleware need no running components.
    directory = tmp_path_factory.mktemp("protected")
    _, public = generate_dev_issuer(directory / "issuer")
    config = parse_config(
        {
            "identity": {
                "issuers": [{"issuer": "t", "key_files": [str(public)], "algorithms": ["EdDSA"]}],
                "signing_key_file": str(directory / "gateway.pem"),
            },
            "policy": {"path": str(REPO / "policies")},
            "storage": {"url": f"sqlite:///{directory / 'gateway.db'}"},
            "audit": {"signing_key_file": str(directory / "audit.pem")},
            "data_dir": str(directory),
        },
        source="test",
    )
    return TestClient(build_app(config), raise_server_exceptions=False)


def _paths(client: TestClient) -> list[tuple[str, list[str]]]:
    routes = [r for r in client.app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    return [(r.path, sorted(r.methods or ())) for r in routes]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_route_but_the_public_ones_needs_a_token(client: TestClient) -> None:
    checked = 0
    for path, methods in _paths(client):
        for method in (m for m in methods if m not in ("HEAD", "OPTIONS")):
            response = client.request(method, _concrete(path))
            public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
            if public:
                assert response.status_code != 401, (method, path)
            else:
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"].startswith("Bearer ")
                checked += 1
    assert checked >= 20  # the REST surfaces, /mcp, the audit explorer


def test_an_unknown_path_is_protected_too(client: TestClient) -> None:
    assert client.get("/v1/not-a-route").status_code == 401


def test_the_public_list_names_only_routes_that_exist(client: TestClient) -> None:
    paths = {path for path, _ in _paths(client)}
    assert PUBLIC_PATHS <= paths, PUBLIC_PATHS - paths
    assert client.get("/console/static/console.js").status_code == 200


def test_options_needs_no_token_and_names_the_methods(client: TestClient) -> None:
    answer = client.options("/v1/runs")
    assert answer.status_code == 204 and "POST" in answer.headers["allow"]


def test_the_public_list_is_what_the_docs_say(tmp_path: Path) -> None:
    # docs/architecture.md lists the public paths for operators; keep them in step.
    text = (REPO / "docs" / "architecture.md").read_text()
    for path in PUBLIC_PATHS | set(PUBLIC_PREFIXES):
        assert f"`{path}`" in text, path
