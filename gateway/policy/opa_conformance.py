"""Conformance cases against an OPA server, over its REST API.

A case without ``data`` asks exactly what the gateway asks in production,
``POST /v1/data/gateway/decision``. A case with a data overlay becomes an ad-hoc query,
``POST /v1/query``, of ``data.gateway.decision`` with one ``with data.<path> as
<value>`` per replaced path. ``with`` replaces the value at its path, whereas a case
overlay merges objects key by key; so the overlay is walked, and where both the
overlay and the server's data hold an object the walk descends instead of replacing
(the server's data at such paths is read with ``GET /v1/data/<path>``).

JSON literals are valid Rego terms, so values go into the query as JSON text.

The ad-hoc query API has no ``strict-builtin-errors`` option (OPA v1.22), so a case with
an overlay sees a failing built-in leave its rule undefined, where the gateway's
engines report an error: cases about built-in errors must not carry ``data``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from gateway.errors import PolicyError
from gateway.policy.conformance import VISIBLE, ConformanceCase
from gateway.policy.decision import parse_decision
from gateway.policy.listing import parse_visible
from gateway.types import Decision

# As the OPA engine asks (gateway.policy.opa): a failing built-in is an error there too.
DECISION_PATH = "/v1/data/gateway/decision?strict-builtin-errors"
VISIBLE_PATH = "/v1/data/gateway/visible?strict-builtin-errors"
QUERY_PATH = "/v1/query"
_MISSING = object()


class OpaCaseRunner:
    """Evaluates cases on the OPA server at ``url``; raises `PolicyError` per case."""

    engine = "opa"

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s))

    def __enter__(self) -> OpaCaseRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __call__(self, case: ConformanceCase) -> Decision | frozenset[str]:
        if case.entrypoint == VISIBLE:
            return parse_visible(self._value(VISIBLE_PATH, "data.gateway.visible", case))
        if not case.data:
            body = self._post(DECISION_PATH, {"input": case.input})
            return parse_decision(
                body.get("result"),
                engine=self.engine,
                revision=None,
                decision_id=body.get("decision_id"),
            )
        withs = " ".join(
            f"with {_ref(path)} as {json.dumps(value)}"
            for path, value in self._replacements(case.data, ())
        )
        query = f"x := data.gateway.decision {withs}"
        body = self._post(QUERY_PATH, {"query": query, "input": case.input})
        rows = body.get("result") or []
        return parse_decision(rows[0]["x"] if rows else None, engine=self.engine, revision=None)

    def _value(self, document: str, query: str, case: ConformanceCase) -> Any:
        """``query`` for the case: the document API without data, else an ad-hoc query."""
        if not case.data:
            return self._post(document, {"input": case.input}).get("result")
        withs = " ".join(
            f"with {_ref(path)} as {json.dumps(value)}"
            for path, value in self._replacements(case.data, ())
        )
        body = self._post(QUERY_PATH, {"query": f"x := {query} {withs}", "input": case.input})
        rows = body.get("result") or []
        return rows[0]["x"] if rows else None

    def _replacements(
        self, overlay: dict[str, Any], prefix: tuple[str, ...]
    ) -> list[tuple[tuple[str, ...], Any]]:
        """The (path, value) pairs that turn OPA's data into data merged with ``overlay``."""
        out: list[tuple[tuple[str, ...], Any]] = []
        for key, value in overlay.items():
            path = (*prefix, key)
            if isinstance(value, dict) and value and isinstance(self._data_at(path), dict):
                out.extend(self._replacements(value, path))
            else:
                out.append((path, value))
        return out

    def _data_at(self, path: tuple[str, ...]) -> Any:
        url = self.url + "/v1/data/" + "/".join(quote(p, safe="") for p in path)
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise PolicyError(f"OPA at {self.url} is unreachable: {exc!r}") from None
        if response.status_code != 200:
            raise PolicyError(f"OPA at {self.url} answered HTTP {response.status_code} for {url}")
        return response.json().get("result", _MISSING)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise PolicyError(f"OPA at {self.url} is unreachable: {exc!r}") from None
        if response.status_code != 200:
            raise PolicyError(
                f"OPA at {self.url} answered HTTP {response.status_code} for {path}: "
                f"{response.text[:300]}"
            )
        try:
            answer = response.json()
        except ValueError:
            raise PolicyError(f"OPA at {self.url} answered {path} with non-JSON") from None
        if not isinstance(answer, dict):
            raise PolicyError(f"OPA at {self.url} answered {path} with {type(answer).__name__}")
        return answer


def _ref(path: tuple[str, ...]) -> str:
    """``data["a"]["b"]``: brackets, so keys need not be Rego identifiers."""
    return "data" + "".join(f"[{json.dumps(part)}]" for part in path)
