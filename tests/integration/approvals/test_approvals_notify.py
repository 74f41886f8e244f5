"""The approval webhook against a real loopback receiver: the JSON body, the Slack text
form, the console link, and that a failing receiver changes nothing for the caller."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.approvals.models import Approval, ApprovalStatus
from gateway.approvals.notify import Notifier
from gateway.types import Actor
from tests.support.processes import free_port
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

APPROVAL = Approval(
    id="apr_0123456789abcdef01234567",
    status=ApprovalStatus.PENDING,
    requester_sub="agent:triage",
    requester_iss="https://issuer.test",
    requester_act_chain=(Actor("user:alice"),),
    tool="up__write",
    definition_hash="cd" * 32,
    arguments_hash="ab" * 32,
    arguments_display={"key": "k", "api_key": "[redacted]"},
    reasons=("up__write needs approval by role:approver",),
    approvers=("role:approver",),
    request_id="req_1",
    created_at="2026-11-21T10:00:00.000000Z",
    expires_at="2026-11-21T11:00:00.000000Z",
)
LINK = "http://gw.test/console#/approvals/apr_0123456789abcdef01234567"


async def test_json_and_slack_bodies_reach_the_receiver() -> None:
    with WebhookReceiver() as receiver:
        async with httpx.AsyncClient() as http:
            for form in ("json", "slack"):
                notifier = Notifier(
                    http, url=receiver.url, format=form, public_url="http://gw.test/"
                )
                notifier.requested(APPROVAL)
                await notifier.close()
        json_body, slack = await asyncio.to_thread(receiver.wait_for, 2)
    assert json_body["type"] == "approval.requested"
    assert json_body["url"] == LINK
    assert json_body["approval"]["id"] == APPROVAL.id
    assert json_body["approval"]["arguments"] == {"key": "k", "api_key": "[redacted]"}
    assert set(slack) == {"text"}
    assert f"<{LINK}|Review {APPROVAL.id} in the console>" in slack["text"]
    assert "agent:triage (acting through user:alice)" in slack["text"]
    assert "`up__write`" in slack["text"]


async def test_an_unreachable_webhook_neither_blocks_nor_raises() -> None:
    sent: list[str] = []

    async def sending(request: httpx.Request) -> None:
        sent.append(str(request.url))

    async with httpx.AsyncClient(event_hooks={"request": [sending]}) as http:
        url = f"http://127.0.0.1:{free_port()}/hook"
        notifier = Notifier(http, url=url, format="json", public_url="http://x")
        notifier.requested(APPROVAL)
        # It returned before even sending: delivery runs in the background.
        assert sent == []
        await notifier.close()  # the failure is only logged
    assert sent == [url]
