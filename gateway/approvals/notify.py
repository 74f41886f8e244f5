"""Telling people that an approval waits: an optional webhook per new request.

Two bodies: ``json`` (the approval as the REST API shows it, plus a link) and
``slack`` (a Slack-compatible ``{"text": …}`` incoming-webhook message). Delivery
runs in the background: a slow or failing webhook is logged and never delays or
fails the held call, because the approval exists and can be decided either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import httpx

from gateway.approvals.models import Approval

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0


def console_link(public_url: str, approval_id: str) -> str:
    return f"{public_url.rstrip('/')}/console#/approvals/{approval_id}"


def json_body(approval: Approval, link: str) -> dict[str, Any]:
    return {"type": "approval.requested", "url": link, "approval": approval.to_dict()}


def slack_body(approval: Approval, link: str) -> dict[str, Any]:
    chain = " via ".join(a.sub for a in approval.requester_act_chain)
    who = approval.requester_sub + (f" (acting through {chain})" if chain else "")
    reasons = "; ".join(approval.reasons) or "policy requires approval"
    text = (
        f":raised_hand: Approval needed: *{who}* wants to call `{approval.tool}`.\n"
        f"{reasons}\n"
        f"Approvers: {', '.join(approval.approvers)}. Expires {approval.expires_at}.\n"
        f"<{link}|Review {approval.id} in the console>"
    )
    return {"text": text}


class Notifier:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        url: str,
        format: Literal["json", "slack"],
        public_url: str,
    ) -> None:
        self._http = http
        self._url = url
        self._format = format
        self._public_url = public_url
        # Strong references: the event loop keeps only weak ones to tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def body(self, approval: Approval) -> dict[str, Any]:
        link = console_link(self._public_url, approval.id)
        if self._format == "slack":
            return slack_body(approval, link)
        return json_body(approval, link)

    def requested(self, approval: Approval) -> None:
        """Sends the notification in the background; returns at once."""
        task = asyncio.get_running_loop().create_task(self._send(approval))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, approval: Approval) -> None:
        try:
            response = await self._http.post(
                self._url, json=self.body(approval), timeout=WEBHOOK_TIMEOUT_S
            )
            if response.status_code >= 300:
                log.warning(
                    "approval webhook for %s answered HTTP %d", approval.id, response.status_code
                )
        except httpx.HTTPError as exc:
            log.warning("approval webhook for %s failed: %r", approval.id, exc)

    async def close(self) -> None:
        """Gives deliveries in flight a moment to finish, then drops them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=WEBHOOK_TIMEOUT_S)
        for task in pending:
            task.cancel()
