"""Applying ``redact`` obligations (architecture.md §5) before anything is written down.

Paths are JSON pointers (RFC 6901) into the policy input document, e.g.
``/arguments/api_key``. A redacted value is replaced by a marker rather than dropped,
so readers of the audit log see that a value was there and was withheld, and a
replayed decision sees the same keys.
"""

from __future__ import annotations

import copy
from typing import Any

REDACTED = "[redacted]"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def redact(document: dict[str, Any], pointers: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Returns a deep copy of `document` with every existing pointer's value replaced
    by `REDACTED` (`document` itself when there is nothing to redact).

    Pointers that do not resolve are ignored: the policy may name fields a particular
    call does not have. ``/arguments/items/-`` style wildcards are not supported; a
    ``*`` token matches every key or index at that level (useful for lists of secrets).
    """
    return replace_at(document, pointers, REDACTED)


def replace_at(
    document: dict[str, Any], pointers: tuple[str, ...] | list[str], marker: str
) -> dict[str, Any]:
    """`redact` with another marker (e.g. one saying a value was withheld)."""
    if not pointers:
        return document
    result = copy.deepcopy(document)
    for pointer in pointers:
        tokens = [_unescape(t) for t in pointer.split("/")[1:]]
        if tokens:
            _redact_at(result, tokens, marker)
    return result


def _redact_at(node: Any, tokens: list[str], marker: str) -> None:
    head, rest = tokens[0], tokens[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
        for key in keys:
            if rest:
                _redact_at(node[key], rest, marker)
            else:
                node[key] = marker
    elif isinstance(node, list):
        if head == "*":
            indexes = range(len(node))
        elif head.isdigit() and int(head) < len(node):
            indexes = range(int(head), int(head) + 1)
        else:
            indexes = range(0)
        for index in indexes:
            if rest:
                _redact_at(node[index], rest, marker)
            else:
                node[index] = marker
