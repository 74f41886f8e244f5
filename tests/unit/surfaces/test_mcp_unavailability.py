"""Any MCP method that finds the database, the audit log or the policy engine
unavailable is answered JSON-RPC -32000 with ``data.retry_after_s`` (REST: 503 with
Retry-After), never -32603 (docs/mcp.md, Errors). Through the SDK's own server and
client, in process."""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest
import sqlalchemy as sa
from mcp.client.client import Client
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from gateway.errors import (
    STORAGE_RETRY_AFTER_S,
    AuditUnavailable,
    PolicyUnavailable,
)
from gateway.surfaces.mcp_results import unavailability_as_retry

DOWN = sa.exc.OperationalError(
    "SELECT payload FROM audit_payloads", {}, psycopg.OperationalError("Connection refused")
)


def failing_server(error: Exception) -> Server[Any]:
    async def list_prompts(_ctx: Any, _params: Any) -> Any:
        raise error

    server: Server[Any] = Server("failing", on_list_prompts=list_prompts)
    server.middleware.append(unavailability_as_retry)
    return server


def error_of(error: Exception) -> Any:
    async def ask() -> Any:
        async with Client(failing_server(error)) as client:
            with pytest.raises(MCPError) as caught:
                await client.list_prompts()
        return caught.value.error

    return anyio.run(ask)


@pytest.mark.parametrize(
    ("error", "retry_after_s"),
    [
        (DOWN, STORAGE_RETRY_AFTER_S),
        (AuditUnavailable("audit log unavailable: disk full"), STORAGE_RETRY_AFTER_S),
        (PolicyUnavailable("no decision in time", retry_after_s=1), 1),
    ],
)
def test_unavailable_is_retry_later_for_any_method(error: Exception, retry_after_s: int) -> None:
    answer = error_of(error)
    assert answer.code == -32000
    assert answer.data["retry_after_s"] == retry_after_s
    assert "SELECT" not in answer.message  # never the statement (it may hold payloads)


def test_a_database_down_says_so_without_the_drivers_reason() -> None:
    answer = error_of(DOWN)
    assert answer.message.startswith("the database is unavailable")
    assert "refused" not in answer.message  # the driver's words are for the log only


def test_other_errors_are_not_turned_into_retries() -> None:
    answer = error_of(ValueError("a bug"))
    assert answer.code == -32603 and "a bug" not in answer.message
