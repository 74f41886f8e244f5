"""The ASGI middleware, on a tiny in-process Starlette app."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.logs import REQUEST_ID
from gateway.surfaces.middleware import BodyLimitMiddleware, RequestIdMiddleware

LIMIT = 64


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "length": len(body),
            "state_id": request.scope["state"].get("request_id"),
            "context_id": REQUEST_ID.get(None),
            "content_length": request.headers.get("content-length"),
        }
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(
        routes=[Route("/echo", echo, methods=["GET", "POST"])],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=LIMIT),
        ],
    )
    with TestClient(app) as test_client:
        yield test_client


def chunks(total: int, size: int = 16) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


# --- RequestIdMiddleware -------------------------------------------------------------


def test_every_response_carries_a_fresh_request_id(client: TestClient) -> None:
    first = client.get("/echo")
    second = client.get("/echo")
    assert first.status_code == 200
    request_id = first.headers["x-request-id"]
    assert re.fullmatch(r"req_[0-9a-f]{20}", request_id)
    assert second.headers["x-request-id"] != request_id


def test_request_id_is_in_scope_state_and_log_context(client: TestClient) -> None:
    response = client.get("/echo")
    body = response.json()
    assert body["state_id"] == response.headers["x-request-id"]
    assert body["context_id"] == response.headers["x-request-id"]


def test_request_id_is_added_to_errors_too(client: TestClient) -> None:
    response = client.get("/missing")
    assert response.status_code == 404
    assert response.headers["x-request-id"].startswith("req_")


def test_a_client_supplied_request_id_is_not_trusted(client: TestClient) -> None:
    response = client.get("/echo", headers={"X-Request-ID": "req_forged"})
    assert response.headers.get_list("x-request-id") != ["req_forged"]
    assert response.json()["state_id"] != "req_forged"


# --- BodyLimitMiddleware -------------------------------------------------------------


def assert_too_large(response_json: dict[str, object]) -> None:
    error = response_json["error"]
    assert isinstance(error, dict)
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in str(error["message"])


def test_small_body_passes(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert response.json()["length"] == LIMIT


def test_declared_oversized_body_is_refused(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert_too_large(response.json())
    # The outer middleware still labels the refusal.
    assert response.headers["x-request-id"].startswith("req_")


def test_chunked_small_body_passes(client: TestClient) -> None:
    response = client.post("/echo", content=chunks(LIMIT))
    assert response.status_code == 200
    assert response.json()["length"] == LIMIT
    assert response.json()["content_length"] is None  # really streamed, nothing declared


def test_chunked_oversized_body_is_refused(client: TestClient) -> None:
    response = client.post("/echo", content=chunks(LIMIT * 4))
    assert response.status_code == 413
    assert_too_large(response.json())


def test_lying_content_length_is_caught_while_streaming(client: TestClient) -> None:
    response = client.post(
        "/echo", content=chunks(LIMIT * 4), headers={"Content-Length": str(LIMIT)}
    )
    assert response.status_code == 413


def test_unparseable_content_length_falls_back_to_counting(client: TestClient) -> None:
    small = client.post("/echo", content=chunks(8), headers={"Content-Length": "lots"})
    assert small.status_code == 200
    big = client.post("/echo", content=chunks(LIMIT * 2), headers={"Content-Length": "lots"})
    assert big.status_code == 413
