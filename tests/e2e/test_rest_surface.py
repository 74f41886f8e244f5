"""The REST surface end to end: plain HTTP clients, through the gateway, to two real HTTP
API upstreams, one receiving a gateway-minted JWT (which it verifies against the
gateway's own JWKS) and one receiving a static secret."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GatewayServer, HttpApiServer, write_policy

API_AUDIENCE = "http://test-api.local"  # what tests/support/http_api.py verifies
STATIC_SECRET = "static-" + secrets.token_hex(12)

GET_ITEM = {
    "name": "get_item",
    "description": "Reads one item",
    "method": "GET",
    "path": "/items/{item}",
    "input_schema": {
        "type": "object",
        "properties": {
            "item": {"type": "string", "minLength": 1},
            "verbose": {"type": "boolean"},
            "tag": {"type": "string"},
        },
        "required": ["item"],
        "additionalProperties": False,
    },
}
CREATE_ITEM = {
    "name": "create_item",
    "description": "Creates an item",
    "method": "POST",
    "path": "/items",
    "input_schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
        "required": ["name"],
        "additionalProperties": False,
    },
}
DELETE_ITEM = {
    "name": "delete_item",
    "description": "Deletes an item",
    "method": "DELETE",
    "path": "/items/{item}",
    "input_schema": {
        "type": "object",
        "properties": {"item": {"type": "string", "minLength": 1}},
        "required": ["item"],
        "additionalProperties": False,
    },
}
TOOLS = [GET_ITEM, CREATE_ITEM, DELETE_ITEM]

GRANTS = [
    {"role": "agent", "tool": "jwtapi__get_item"},
    {"role": "agent", "tool": "jwtapi__create_item"},
    {"role": "agent", "tool": "jwtapi__delete_item", "approval": {"approvers": ["role:approver"]}},
    {"role": "agent", "tool": "staticapi__get_item"},
    {"role": "agent", "tool": "staticapi__create_item"},
    # staticapi__delete_item: no grant, so every call to it is denied.
]
VISIBLE = {
    "jwtapi__get_item",
    "jwtapi__create_item",
    "jwtapi__delete_item",
    "staticapi__get_item",
    "staticapi__create_item",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rest")


@pytest.fixture(scope="module")
def configured(workdir: Path) -> GatewayServer:
    """The gateway's config with its port chosen, not started: the JWT-verifying API
    needs the gateway's JWKS URL, and the gateway needs the APIs' URLs."""
    return GatewayServer.configure(
        workdir / "gateway",
        upstreams=[],
        policy=write_policy(workdir, GRANTS),
        env={"TEST_API_SECRET": STATIC_SECRET},
    )


@pytest.fixture(scope="module")
def jwt_api(workdir: Path, configured: GatewayServer) -> Iterator[HttpApiServer]:
    server = HttpApiServer.start(workdir, jwks_url=configured.url + "/.well-known/jwks.json")
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def static_api(workdir: Path) -> Iterator[HttpApiServer]:
    server = HttpApiServer.start(workdir)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    configured: GatewayServer, jwt_api: HttpApiServer, static_api: HttpApiServer
) -> Iterator[GatewayServer]:
    configured.config["upstreams"] = [
        {
            "name": "jwtapi",
            "kind": "http",
            "base_url": jwt_api.url,
            "timeout_s": 5,
            "credentials": {"mode": "jwt", "audience": API_AUDIENCE},
            "tools": TOOLS,
        },
        {
            "name": "staticapi",
            "kind": "http",
            "base_url": static_api.url,
            "timeout_s": 5,
            "credentials": {"mode": "static", "env": "TEST_API_SECRET"},
            "tools": TOOLS,
        },
    ]
    configured.start()
    yield configured
    configured.stop()


def call(
    gateway: GatewayServer,
    tool: str,
    arguments: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    content = json.dumps({"arguments": arguments or {}}).encode() if body is None else body
    return httpx.post(
        f"{gateway.url}/v1/tools/{tool}/call",
        content=content,
        headers={**gateway.headers(token), "Content-Type": "application/json"},
        timeout=15,
    )


def calls_total(gateway: GatewayServer, transport: str, status: str) -> float:
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_calls_total" and sample.labels == {
                "transport": transport,
                "status": status,
            }:
                return sample.value
    return 0.0


# --- listing -------------------------------------------------------------------------


def test_tools_are_listed_per_principal(gateway: GatewayServer) -> None:
    response = httpx.get(gateway.url + "/v1/tools", headers=gateway.headers(), timeout=10)
    assert response.status_code == 200
    tools = {t["name"]: t for t in response.json()["tools"]}
    assert set(tools) == VISIBLE  # staticapi__delete_item has no grant: hidden
    assert tools["staticapi__get_item"]["input_schema"] == GET_ITEM["input_schema"]
    assert tools["jwtapi__create_item"]["description"] == "Creates an item"
    assert all(len(t["definition_hash"]) == 64 for t in tools.values())

    for roles in [(), ("visitor",)]:
        response = httpx.get(
            gateway.url + "/v1/tools", headers=gateway.headers(roles=roles), timeout=10
        )
        assert response.status_code == 200
        assert response.json() == {"tools": []}


# --- successful calls ----------------------------------------------------------------


def test_allowed_call_returns_result_and_decision(
    gateway: GatewayServer, static_api: HttpApiServer
) -> None:
    before = calls_total(gateway, "rest", "ok")
    response = call(gateway, "staticapi__create_item", {"name": "widget", "qty": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == body["request_id"]
    assert body["result"]["is_error"] is False
    assert body["result"]["structured_content"]["echo"] == {"name": "widget", "qty": 3}
    assert body["decision"]["allow"] is True
    assert body["decision"]["rule"] == "grant"
    assert "error" not in body

    received = static_api.calls()[-1]
    assert (received["method"], received["path"]) == ("POST", "/items")
    assert received["json"] == {"name": "widget", "qty": 3}
    assert calls_total(gateway, "rest", "ok") == before + 1


def test_get_arguments_go_in_the_query_string(
    gateway: GatewayServer, static_api: HttpApiServer
) -> None:
    response = call(
        gateway, "staticapi__get_item", {"item": "abc", "verbose": True, "tag": "t 1&x=2"}
    )
    assert response.status_code == 200, response.text
    received = static_api.calls()[-1]
    assert (received["method"], received["path"]) == ("GET", "/items/abc")
    # Non-strings are JSON-encoded; reserved characters stay inside their value.
    assert received["query"] == {"verbose": "true", "tag": "t 1&x=2"}
    assert received["json"] is None


def test_path_placeholders_are_url_encoded(
    gateway: GatewayServer, static_api: HttpApiServer
) -> None:
    # Control: sent unencoded, the dot segment resolves and the request reaches /items/b.
    httpx.get(static_api.url + "/items/a/../b", timeout=5)
    assert static_api.calls()[-1]["path"] == "/items/b"

    before = len(static_api.calls())
    response = call(gateway, "staticapi__get_item", {"item": "a/../b"})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    # One segment "a%2F..%2Fb": no route of the API matches it, so its router (not the
    # item handler, which would say "no such item") answers 404. Nothing at /items/b.
    assert result["is_error"] is True
    assert result["content"][0]["text"] == "HTTP 404: Not Found"
    assert len(static_api.calls()) == before

    # A whole-segment dot or dot-dot is sent percent-encoded, so URL normalization cannot
    # remove it: the API sees an item named "..", not a request for "/".
    for item in ("..", "."):
        response = call(gateway, "staticapi__get_item", {"item": item})
        assert response.status_code == 200, response.text
        assert response.json()["result"]["is_error"] is False
        assert static_api.calls()[-1]["path"] == f"/items/{item}"

    response = call(gateway, "staticapi__get_item", {"item": "x y?tag=evil#frag"})
    assert response.status_code == 200, response.text
    received = static_api.calls()[-1]
    # "?" and "#" stayed inside the path segment: no query, no fragment cut.
    assert received["path"] == "/items/x y%3Ftag=evil%23frag"
    assert received["query"] == {}


# --- upstream credentials ------------------------------------------------------------


def test_jwt_upstream_receives_a_minted_token(
    gateway: GatewayServer, jwt_api: HttpApiServer
) -> None:
    agent_token = gateway.token(sub="agent:rest-jwt", act=("user:alice",))
    response = call(gateway, "jwtapi__get_item", {"item": "who"}, token=agent_token)
    assert response.status_code == 200, response.text
    # The API verified the token against the gateway's JWKS; a bad one would be a 401.
    assert response.json()["result"]["is_error"] is False

    received = jwt_api.calls()[-1]
    presented = received["authorization"].removeprefix("Bearer ")
    assert presented != agent_token and agent_token not in received["authorization"]
    claims = received["claims"]
    assert claims["iss"] == gateway.url
    assert claims["sub"] == "agent:rest-jwt"
    assert claims["aud"] == API_AUDIENCE
    assert claims["act"] == {"sub": gateway.url, "act": {"sub": "user:alice"}}
    assert 0 < claims["exp"] - claims["iat"] <= 300

    # Independently of the API: the token verifies with the published key.
    jwks = jwt.PyJWKSet.from_dict(httpx.get(gateway.url + "/.well-known/jwks.json").json())
    kid = jwt.get_unverified_header(presented)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    verified = jwt.decode(presented, key.key, algorithms=["EdDSA"], audience=API_AUDIENCE)
    assert verified["sub"] == "agent:rest-jwt"


def test_static_upstream_receives_exactly_the_secret(
    gateway: GatewayServer, static_api: HttpApiServer
) -> None:
    agent_token = gateway.token(sub="agent:rest-static")
    response = call(gateway, "staticapi__get_item", {"item": "secret-check"}, token=agent_token)
    assert response.status_code == 200, response.text
    received = static_api.calls()[-1]
    assert received["path"] == "/items/secret-check"
    assert received["authorization"] == f"Bearer {STATIC_SECRET}"
    assert received["claims"] is None


def test_upstream_http_error_is_an_error_result(
    gateway: GatewayServer, static_api: HttpApiServer
) -> None:
    response = call(gateway, "staticapi__get_item", {"item": "missing"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"  # forwarded; the API itself said no
    assert body["result"]["is_error"] is True
    assert body["result"]["content"][0]["text"].startswith("HTTP 404:")
    assert body["result"]["structured_content"] == {"error": "no such item"}
    assert static_api.calls()[-1]["path"] == "/items/missing"


# --- refusals --------------------------------------------------------------------------


def test_denied_call_is_403_and_never_forwarded(
    gateway: GatewayServer, jwt_api: HttpApiServer, static_api: HttpApiServer
) -> None:
    before = (len(jwt_api.calls()), len(static_api.calls()))
    response = call(gateway, "staticapi__delete_item", {"item": "precious"})
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["status"] == "denied"
    assert body["error"]["code"] == "denied"
    assert body["decision"]["allow"] is False
    assert body["decision"]["rule"] == "no_grant"
    assert "result" not in body
    assert (len(jwt_api.calls()), len(static_api.calls())) == before


def test_approval_required_is_202_pending_and_never_forwarded(
    gateway: GatewayServer, jwt_api: HttpApiServer
) -> None:
    before = len(jwt_api.calls())
    # Prefer: wait=0 (RFC 7240): answer at once instead of holding for a decision.
    response = httpx.post(
        f"{gateway.url}/v1/tools/jwtapi__delete_item/call",
        json={"arguments": {"item": "precious"}},
        headers={**gateway.headers(), "Prefer": "wait=0"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending_approval"
    assert body["error"]["code"] == "pending_approval"
    assert body["approval_id"].startswith("apr_")
    assert body["approval_id"] in body["error"]["message"]
    assert body["decision"]["allow"] is True
    assert body["decision"]["require_approval"] is True
    assert body["decision"]["obligations"]["approvers"] == ["role:approver"]
    assert len(jwt_api.calls()) == before


@pytest.mark.parametrize("tool", ["staticapi__nope", "nosuchupstream__get_item", "x"])
def test_unknown_tool_is_404(gateway: GatewayServer, tool: str) -> None:
    response = call(gateway, tool, {"item": "a"})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_tool"


@pytest.mark.parametrize(
    "arguments",
    [{"name": 5}, {"qty": 2}, {"name": "w", "qty": 0}, {"name": "w", "colour": "red"}],
    ids=["wrong-type", "missing-required", "below-minimum", "extra-property"],
)
def test_schema_invalid_arguments_are_400(
    gateway: GatewayServer, static_api: HttpApiServer, arguments: dict[str, Any]
) -> None:
    before = len(static_api.calls())
    response = call(gateway, "staticapi__create_item", arguments)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == "invalid_arguments"
    assert body["decision"]["engine"] == "gateway"  # refused before policy
    assert len(static_api.calls()) == before


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'{"arguments": {"name": ', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"arguments": {"name": "w"}, "tool": "other"}', "tool"),
        (b'{"arguments": ["w"]}', "arguments"),
        (b'["w"]', "body"),
    ],
    ids=["truncated-json", "not-utf8", "unknown-key", "arguments-not-object", "not-object"],
)
def test_malformed_body_is_400(
    gateway: GatewayServer, static_api: HttpApiServer, body: bytes, mentions: str
) -> None:
    before = len(static_api.calls())
    response = call(gateway, "staticapi__create_item", body=body)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error"  # a CallResponse, as the OpenAPI says
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert mentions in error["message"]
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert len(static_api.calls()) == before


# --- documents and operations ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/schedules", "GET, HEAD, OPTIONS, POST"),
        ("/v1/runs", "GET, HEAD, OPTIONS, POST"),
        ("/v1/tools", "GET, HEAD, OPTIONS"),
        ("/v1/tools/up__x/call", "OPTIONS, POST"),
    ],
)
def test_options_and_405_name_every_method_of_a_path(
    gateway: GatewayServer, path: str, methods: str
) -> None:
    options = httpx.options(gateway.url + path, timeout=5)
    assert options.status_code == 204
    assert options.headers["allow"] == methods
    wrong = httpx.request("PATCH", gateway.url + path, headers=gateway.headers(), timeout=5)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == set(methods.split(", "))


def test_openapi_document_describes_the_rest_surface(gateway: GatewayServer) -> None:
    response = httpx.get(gateway.url + "/openapi.json", timeout=5)
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"] == [{"url": gateway.url}]
    assert set(doc["paths"]["/v1/tools"]) == {"get"}
    operation = doc["paths"]["/v1/tools/{name}/call"]["post"]
    assert operation["parameters"][0]["name"] == "name"
    assert {"200", "400", "401", "403", "404", "413"} <= set(operation["responses"])
    schemas = doc["components"]["schemas"]
    assert {"CallRequest", "CallResponse", "ErrorBody", "ToolList"} <= set(schemas)
    assert schemas["CallRequest"]["additionalProperties"] is False
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

    # Every $ref points at a schema the document defines.
    refs = _refs(doc)
    assert refs, "the document references no schemas"
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_health_and_readiness(gateway: GatewayServer) -> None:
    health = httpx.get(gateway.url + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}

    ready = httpx.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["policy"]["ok"] is True
    assert body["checks"]["policy"]["engine"]
    assert body["checks"]["database"] == {"ok": True}
    assert set(body["upstreams"]) == {"jwtapi", "staticapi"}
    assert all(u["connected"] is True for u in body["upstreams"].values())


def test_metrics_count_rest_calls_by_status(gateway: GatewayServer) -> None:
    denied_before = calls_total(gateway, "rest", "denied")
    assert call(gateway, "staticapi__delete_item", {"item": "m"}).status_code == 403
    assert calls_total(gateway, "rest", "denied") == denied_before + 1

    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    assert "# TYPE gateway_calls_total counter" in text
    assert 'transport="rest"' in text
