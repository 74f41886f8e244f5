"""How the gateway names what upstreams offer (docs/mcp.md, "Names and URIs";
docs/decisions/0016).

- Tools and prompts: ``<upstream>__<name>``. Names are never split to route: the
  catalog looks each gateway name up exactly (an upstream name may itself hold
  ``__``).
- Resources and resource templates: ``gateway:<upstream>/<original URI>``, the
  original verbatim after the first slash. Nothing of the original is parsed or
  re-encoded, so a template's expansion on the gateway's form is the gateway form of
  its expansion on the original, and a read is routed by the prefix alone: a URI
  without it, or naming no known upstream, is refused, never guessed.
"""

from __future__ import annotations

SEPARATOR = "__"
URI_SCHEME = "gateway:"


def gateway_name(server: str, name: str) -> str:
    return f"{server}{SEPARATOR}{name}"


def gateway_uri(server: str, uri: str) -> str:
    return f"{URI_SCHEME}{server}/{uri}"


def split_gateway_uri(uri: str) -> tuple[str, str] | None:
    """(upstream, original URI) of a gateway resource URI or URI template; None when
    ``uri`` is not of the form ``gateway:<upstream>/<original>``."""
    if not uri.startswith(URI_SCHEME):
        return None
    server, slash, original = uri[len(URI_SCHEME) :].partition("/")
    if not slash or not server or not original:
        return None
    return server, original
