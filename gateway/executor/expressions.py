"""Plan expressions: JMESPath over ``{"inputs": …, "steps": {<id>: {"output", "status"}}}``.

JMESPath is declarative and not Turing-complete (no loops, no assignment, no access
to Python objects), so a plan can compute arguments and route on earlier outputs
without the gateway ever evaluating code (architecture.md §8).

Arguments embed expressions as ``${{ expression }}``. A string that is exactly one
template becomes the expression's value with its JSON type (a number stays a number);
templates inside a longer string are interpolated as text. ``when`` conditions are a
bare expression (the ``${{ }}`` wrapper is optional) tested for JMESPath truthiness:
``false``, ``null``, ``""``, ``[]`` and ``{}`` are false, everything else (``0`` too)
is true.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.executor.errors import ExpressionError

if TYPE_CHECKING:
    from jmespath.parser import ParsedResult

TEMPLATE = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)

# A root-level path that names the whole context ("@"): never allowed, because it
# would let a step read outputs of steps it does not depend on.
WHOLE_CONTEXT = ("@",)


def compile_expression(text: str) -> ParsedResult:
    """Parses one expression; raises `ExpressionError` with the parser's message."""
    import jmespath  # lazily: only runs need it, not the start (docs/performance.md)

    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"invalid expression {text!r}: {_first_line(exc)}") from None


def condition_text(when: str) -> str:
    """A ``when`` with or without its ``${{ }}`` wrapper, as the bare expression."""
    match = TEMPLATE.fullmatch(when.strip())
    return match.group(1) if match else when


def templates(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(path, expression)`` in a JSON value; ``path`` like ``a.b[0]``."""
    if isinstance(value, str):
        for match in TEMPLATE.finditer(value):
            yield path, match.group(1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from templates(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from templates(item, f"{path}[{index}]")


def has_templates(value: Any) -> bool:
    return next(templates(value), None) is not None


def root_paths(parsed: ParsedResult) -> list[tuple[str, ...]]:
    """The leading field chains an expression reads from the root of the context.

    ``steps.a.output.items[?n > `1`].name`` reads ``("steps", "a", "output", "items")``
    from the root; ``n`` and ``name`` are read from list elements and are not
    references. Used to check that a step refers only to inputs and to steps it needs.
    """
    found: list[tuple[str, ...]] = []
    _walk(parsed.parsed, found)
    return found


def _walk(node: dict[str, Any], found: list[tuple[str, ...]]) -> None:
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        found.append((node["value"],))
    elif kind == "current":
        found.append(WHOLE_CONTEXT)
    elif kind == "subexpression":
        # jmespath flattens a.b.c into one node; the fields up front are the path,
        # whatever follows is evaluated relative to them.
        fields = []
        for child in children:
            if child["type"] != "field":
                break
            fields.append(child["value"])
        if fields:
            found.append(tuple(fields))
        else:
            _walk(children[0], found)
    elif kind in ("index_expression", "projection", "value_projection", "filter_projection"):
        _walk(children[0], found)  # the right side and any filter run per element
    elif kind in ("flatten", "pipe"):
        _walk(children[0], found)
    elif kind == "multi_select_dict":
        for pair in children:
            _walk(pair["children"][0], found)
    elif kind in (
        "comparator",
        "or_expression",
        "and_expression",
        "not_expression",
        "multi_select_list",
        "function_expression",
        "key_val_pair",
    ):
        for child in children:
            _walk(child, found)
    # literal, index, slice, expref (evaluated per element), identity: no root read


def evaluate(text: str, context: dict[str, Any]) -> Any:
    import jmespath  # lazily: only runs need it, not the start (docs/performance.md)

    try:
        return jmespath.search(text, context)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"expression {text!r} failed: {_first_line(exc)}") from None


def truthy(value: Any) -> bool:
    """JMESPath truthiness (the spec's, not Python's: ``0`` is true)."""
    return not (value is None or value is False or value in ("", [], {}))


def condition_holds(when: str, context: dict[str, Any]) -> bool:
    return truthy(evaluate(condition_text(when), context))


def render(value: Any, context: dict[str, Any]) -> Any:
    """`value` with every template replaced by its value in `context`."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value)
        if whole:
            return evaluate(whole.group(1), context)
        return TEMPLATE.sub(lambda m: _as_text(evaluate(m.group(1), context)), value)
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
