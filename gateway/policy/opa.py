"""The OPA engine: decisions by an OPA server (usually a sidecar) over its REST API.

Every decision is ``POST {url}/v1/data/gateway/decision?strict-builtin-errors&provenance``
with ``{"input": …}`` over one long-lived keep-alive client (`gateway.http_client`). The query
options are there for the audit trail and for parity with the embedded engine:

- ``strict-builtin-errors``: a failing built-in (``to_number("x")``) is an error, as in
  the embedded engine, instead of silently leaving a rule undefined;
- ``provenance``: the response names the bundle revision(s) that produced this very
  decision, so the revision recorded with it cannot be stale. It costs no measurable
  time (bench/results/policy_decision-*.md).

OPA returns a ``decision_id`` when its decision logging is on; it is recorded with the
decision so an audit entry can be matched to OPA's own decision log.

Revision (what `revision` and each decision report):
- OPA serving one bundle: that bundle's manifest revision (``opa build --revision``);
- several bundles: ``name=revision`` pairs sorted by name, comma-separated;
- no bundle (plain files, or modules pushed through the REST API): OPA knows no
  revision, so the engine reports ``opa:<url>``, which says where decisions came from,
  and not when the policy changed (`revision_follows_policy` is False): nothing is
  kept per revision then (docs/policies.md, "Lists").

Failures never return: a connection error, a timeout, a non-200 answer, an undefined
``data.gateway.decision`` or a malformed result raise a `PolicyError` subclass whose
message names OPA and its URL, and `decide` turns it into a deny.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from gateway.config import OpaPolicyConfig
from gateway.errors import NoDecision, PolicyError
from gateway.http_client import (
    HttpConnectError,
    HttpResponse,
    HttpTransportError,
    KeepAliveClient,
)
from gateway.policy.decision import parse_decision
from gateway.policy.listing import ListUnsupported
from gateway.types import Decision

DECISION_PATH = "/v1/data/gateway/decision"
DECISION_TARGET = DECISION_PATH + "?strict-builtin-errors&provenance"
VISIBLE_TARGET = "/v1/data/gateway/visible?strict-builtin-errors&provenance"
HEALTH_TARGET = "/health?bundles"
BUNDLES_TARGET = "/v1/data/system/bundles"
READY_TIMEOUT_S = 1.0

# `decide` enforces the same `timeout_ms` around the whole evaluation. The engine gives
# up slightly earlier so that its own message (naming OPA and its URL) is normally the
# reason recorded. When the event loop lags past both deadlines at once, the outer one
# wins and the reason is decide's "policy engine opa did not answer within …": a deny
# either way.
_MARGIN_S = 0.005


class OpaUnavailable(NoDecision):
    """OPA could not be reached, or the connection failed mid-request."""

    code = "policy_engine_unavailable"


class OpaTimeout(NoDecision):
    """OPA did not answer within `policy.timeout_ms`."""

    code = "policy_engine_timeout"


class OpaErrorResponse(PolicyError):
    """OPA answered with an error status (a built-in error, a rule conflict, a bad query)."""

    code = "policy_engine_error"


class DecisionUndefined(PolicyError):
    """OPA has no ``data.gateway.decision`` (the gateway policy is not loaded)."""

    code = "policy_result_undefined"


class OpaEngine:
    """Evaluates ``data.gateway.decision`` on an OPA server; see the module docstring."""

    name = "opa"
    evaluates_inline = False

    def __init__(self, config: OpaPolicyConfig, *, max_connections: int = 32) -> None:
        self.url = config.url.rstrip("/")
        self.timeout_ms = config.timeout_ms
        timeout_s = config.timeout_ms / 1000
        self._budget_s = timeout_s - min(_MARGIN_S, timeout_s / 10)
        self._client = KeepAliveClient(self.url, max_connections=max_connections)
        self._revision: str | None = None
        self._revision_fetched = False

    @property
    def revision(self) -> str:
        """The bundle revision(s) OPA last reported, else ``opa:<url>``."""
        return self._revision or f"opa:{self.url}"

    @property
    def revision_follows_policy(self) -> bool:
        """Only a bundle's revision does: modules and data pushed through OPA's REST
        API, or files it watches, change under one ``opa:<url>``."""
        return self._revision is not None

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        try:
            body = json.dumps({"input": policy_input}, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"policy input cannot be sent to OPA as JSON: {exc}") from None
        response = await self._request("POST", DECISION_TARGET, body, self._budget_s)
        document = self._document(response)
        if "result" not in document:
            raise DecisionUndefined(
                f"data.gateway.decision is undefined on the OPA server at {self.url} "
                "(is the gateway policy loaded?)"
            )
        provenance = document.get("provenance")
        if isinstance(provenance, dict):
            # None when OPA serves no bundle (any more): never keep a stale revision.
            self._revision = _bundle_revision(provenance)
        decision_id = document.get("decision_id")
        return parse_decision(
            document["result"],
            engine=self.name,
            revision=self.revision,
            decision_id=decision_id if isinstance(decision_id, str) else None,
        )

    async def evaluate_list(self, list_input: dict[str, Any]) -> tuple[Any, str | None]:
        """``POST /v1/data/gateway/visible``; see gateway.policy.listing."""
        try:
            body = json.dumps({"input": list_input}, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"list input cannot be sent to OPA as JSON: {exc}") from None
        response = await self._request("POST", VISIBLE_TARGET, body, self._budget_s)
        document = self._document(response)
        if "result" not in document:
            raise ListUnsupported(
                f"data.gateway.visible is undefined on the OPA server at {self.url}"
            )
        provenance = document.get("provenance")
        if isinstance(provenance, dict):
            self._revision = _bundle_revision(provenance)
        return document["result"], self.revision

    async def ready(self) -> bool:
        """True when ``/health?bundles`` answers 200 (OPA up, its bundles activated)."""
        try:
            response = await self._request("GET", HEALTH_TARGET, None, READY_TIMEOUT_S)
        except PolicyError:
            return False
        if response.status != 200:
            return False
        if not self._revision_fetched:
            # Once, so /readyz can show the revision before the first decision; later
            # changes arrive with each decision's provenance.
            self._revision_fetched = True
            await self._fetch_revision()
        return True

    async def close(self) -> None:
        await self._client.aclose()

    async def _fetch_revision(self) -> None:
        try:
            # Half the probe's time: /readyz gives the whole check 2 s.
            response = await self._request("GET", BUNDLES_TARGET, None, READY_TIMEOUT_S / 2)
            document = self._document(response)
        except PolicyError:
            return  # best effort: the revision also comes with every decision
        bundles = document.get("result")
        if isinstance(bundles, dict):
            revisions = {
                name: b.get("manifest", {}).get("revision")
                for name, b in bundles.items()
                if isinstance(b, dict) and isinstance(b.get("manifest"), dict)
            }
            self._revision = _format_revisions(revisions) or self._revision

    async def _request(
        self, method: str, target: str, body: bytes | None, timeout_s: float
    ) -> HttpResponse:
        try:
            with anyio.fail_after(timeout_s):
                return await self._client.request(method, target, body)
        except TimeoutError:
            raise OpaTimeout(
                f"OPA at {self.url} did not answer within {self.timeout_ms} ms"
                if target == DECISION_TARGET
                else f"OPA at {self.url} did not answer {target} within {timeout_s:g} s"
            ) from None
        except HttpConnectError as exc:
            raise OpaUnavailable(f"OPA at {self.url} is unreachable: {exc.message}") from None
        except HttpTransportError as exc:
            raise OpaUnavailable(f"OPA at {self.url} failed to answer: {exc.message}") from None

    def _document(self, response: HttpResponse) -> dict[str, Any]:
        """The JSON object of a response; raises on an error status or a non-object."""
        try:
            document = json.loads(response.body) if response.body else None
        except ValueError:
            document = None
        if response.status != 200:
            raise OpaErrorResponse(
                f"OPA at {self.url} returned HTTP {response.status}: {_error_message(document)}"
            )
        if not isinstance(document, dict):
            raise OpaErrorResponse(f"OPA at {self.url} returned a body that is not a JSON object")
        return document


def _error_message(document: Any) -> str:
    """OPA's own explanation: the first detailed error, else the top-level message."""
    if not isinstance(document, dict):
        return "(no error message)"
    errors = document.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        message = str(first.get("message", "")).strip()
        location = first.get("location")
        if isinstance(location, dict) and location.get("file"):
            message += f" ({location['file']}:{location.get('row', '?')})"
        if message:
            return message
    return str(document.get("message") or document.get("code") or "(no error message)")


def _bundle_revision(provenance: dict[str, Any]) -> str | None:
    """The revision(s) in a ``?provenance`` answer; None when OPA serves no bundle."""
    if not isinstance(provenance.get("bundles"), dict):
        return None
    return _format_revisions(
        {
            name: info.get("revision")
            for name, info in provenance["bundles"].items()
            if isinstance(info, dict)
        }
    )


def _format_revisions(revisions: dict[str, Any]) -> str | None:
    named = {str(name): str(rev) for name, rev in revisions.items() if isinstance(rev, str) and rev}
    if not named:
        return None
    if len(revisions) == 1:
        return next(iter(named.values()))
    return ",".join(f"{name}={rev}" for name, rev in sorted(named.items()))
