"""A driver error meaning the database cannot be reached, raised by any handler, is
answered 503 database_unavailable with the request id, never a 500 (the database may
be restarting; docs/operations.md, Faults)."""

from __future__ import annotations

import json

import psycopg
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.errors import STORAGE_RETRY_AFTER_S
from gateway.store import UNREACHABLE
from gateway.surfaces.auth import database_unreachable


def failing(error: Exception) -> Starlette:
    async def handler(_request: Request) -> None:
        raise error

    return Starlette(
        routes=[Route("/x", handler, methods=["POST"])],
        exception_handlers=dict.fromkeys(UNREACHABLE, database_unreachable),
    )


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.OperationalError(
            "SELECT 1", {}, psycopg.OperationalError("connection failed: Connection refused")
        ),
        sa.exc.InterfaceError("SELECT 1", {}, psycopg.InterfaceError("the connection is closed")),
    ],
)
def test_an_unreachable_database_is_503(error: Exception) -> None:
    with TestClient(failing(error), raise_server_exceptions=False) as client:
        response = client.post("/x")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(STORAGE_RETRY_AFTER_S)
    body = json.loads(response.text)["error"]
    assert body["code"] == "database_unavailable"
    assert body["message"].startswith("the database is unavailable")
    # Neither the driver's reason (it can name the database's host, port and user) nor
    # the statement (it may hold payloads): those are for the gateway's log.
    assert "refused" not in body["message"] and "closed" not in body["message"]
    assert "SELECT" not in body["message"]


def test_other_database_errors_stay_errors() -> None:
    error = sa.exc.IntegrityError("INSERT", {}, psycopg.IntegrityError("duplicate key"))
    with TestClient(failing(error), raise_server_exceptions=False) as client:
        assert client.post("/x").status_code == 500
