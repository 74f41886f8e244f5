"""Commands that talk to a running gateway over its REST API (approvals, tool
definitions, runs): the shared --url/--token options and the one request helper."""

from __future__ import annotations

import argparse
import os
from typing import Any

from gateway.dev_state import dev_url
from gateway.errors import GatewayError

TIMEOUT_S = 30.0

# Added to a refusal's message: what the user can check.
_HINTS = {401: " (is the token valid and meant for this gateway?)"}


class RemoteError(GatewayError):
    """The gateway could not be reached, or refused the request."""

    code = "remote_error"


def add_remote_options(parser: argparse.ArgumentParser, *, token_help: str) -> None:
    parser.add_argument(
        "--url",
        help="the gateway (default: $GATEWAY_URL, else the dev gateway last started in "
        "var/dev, else http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("GATEWAY_TOKEN"),
        help=f"{token_help} (default: $GATEWAY_TOKEN)",
    )


def gateway_url(args: argparse.Namespace) -> str:
    """--url, else $GATEWAY_URL, else the dev gateway's (read when a command runs, not
    when the parser is built: --help reads no file)."""
    return str(args.url or os.environ.get("GATEWAY_URL") or dev_url())


def request(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    not_found_hint: str = "",
) -> dict[str, Any]:
    """One authenticated call; the JSON object answered, or RemoteError saying why not."""
    import httpx

    if not args.token:
        raise RemoteError("no token: pass --token or set $GATEWAY_TOKEN to your JWT")
    base = gateway_url(args)
    url = base.rstrip("/") + path
    try:
        response = httpx.request(
            method,
            url,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {args.token}"},
            timeout=TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the gateway at {base}: {exc}") from None
    if response.status_code == 204:
        return {}
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = (data.get("error") or {}) if isinstance(data, dict) else {}
        message = error.get("message") or response.text[:200] or response.reason_phrase
        hint = (
            not_found_hint if response.status_code == 404 else _HINTS.get(response.status_code, "")
        )
        raise RemoteError(
            f"HTTP {response.status_code} {error.get('code', 'error')}: {message}{hint}"
        )
    if not isinstance(data, dict):
        raise RemoteError(f"unexpected answer from {url}: {response.text[:200]}")
    return data
