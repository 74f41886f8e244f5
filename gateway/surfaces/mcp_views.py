"""How an MCP endpoint names things for its clients (docs/mcp.md, "Names and URIs").

`/mcp` shows every upstream in the gateway's names: ``<upstream>__<name>`` for tools
and prompts, ``gateway:<upstream>/<URI>`` for resources. `/mcp/{upstream}` shows one
upstream in its own names and URIs, as if the client talked to it directly. The
pipeline, policy and the audit log always see the gateway's names: a view only
translates at the edge, inward (what the client sent) and outward (what it is given).

An outward URI that is not the viewed upstream's (a resource link to another
upstream's resource) is left in the gateway's form: the client can still read it
through `/mcp`, and nothing is passed off as the viewed upstream's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from gateway.upstreams.naming import gateway_name, gateway_uri, split_gateway_uri

# The path parameter of `/mcp/{upstream}`.
UPSTREAM_PARAM = "upstream"


@dataclass(frozen=True)
class View:
    upstream: str | None = None  # None: the aggregated `/mcp`

    @classmethod
    def of(cls, request: Request) -> View:
        return cls(request.path_params.get(UPSTREAM_PARAM))

    @property
    def aggregated(self) -> bool:
        return self.upstream is None

    # --- inward: the client's names to the gateway's ----------------------------------

    def name_in(self, name: str) -> str:
        return name if self.upstream is None else gateway_name(self.upstream, name)

    def uri_in(self, uri: str) -> str:
        return uri if self.upstream is None else gateway_uri(self.upstream, uri)

    # --- outward: the gateway's names to the client's ------------------------------------

    def name_out(self, name: str, own: str) -> str:
        """``name`` is the gateway's, ``own`` the upstream's for the same thing."""
        return name if self.upstream is None else own

    def uri_out(self, uri: str) -> str:
        if self.upstream is None:
            return uri
        routed = split_gateway_uri(uri)
        if routed is None or routed[0] != self.upstream:
            return uri
        return routed[1]

    def content_out(self, item: dict[str, Any]) -> dict[str, Any]:
        """A content item (tool result, prompt message) with its resource URI outward."""
        if self.upstream is None:
            return item
        if item.get("type") == "resource" and isinstance(item.get("resource"), dict):
            inner = item["resource"]
            if isinstance(inner.get("uri"), str):
                return {**item, "resource": {**inner, "uri": self.uri_out(inner["uri"])}}
        if item.get("type") == "resource_link" and isinstance(item.get("uri"), str):
            return {**item, "uri": self.uri_out(item["uri"])}
        return item

    def read_out(self, document: dict[str, Any]) -> dict[str, Any]:
        contents = [{**c, "uri": self.uri_out(c["uri"])} for c in document.get("contents", [])]
        return {**document, "contents": contents}

    def prompt_out(self, document: dict[str, Any]) -> dict[str, Any]:
        messages = [
            {**m, "content": self.content_out(m["content"])} for m in document.get("messages", [])
        ]
        return {**document, "messages": messages}
