"""Hypothesis strategies for hostile JSON-ish documents: everything JSON text can
carry into the gateway (NaN and infinities as literals, integers of any size, lone
surrogates as escapes, deep nesting), beside plain values."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Values the issue found poisoning or crashing: each must be refused cleanly.
HOSTILE_SCALARS: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    9007199254740993,  # no double equals it
    -(2**64) - 1,
    10**400,
    "\ud800",  # lone surrogates
    "\udfff",
    "a\udc00b",
]
# Values that look hostile but are I-JSON and must be accepted.
EDGE_SCALARS: list[Any] = [1e17, 10**17, 2**53, -(2**60), 1e-7, 1e21, -0.0, "", "\u2028", "😀"]

_text = st.text(st.characters(exclude_categories=()), max_size=12)
_keys = st.one_of(_text, st.sampled_from(["a", "b", "text", "\ud800", "~/"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.sampled_from(HOSTILE_SCALARS + EDGE_SCALARS),
)


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def documents(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """JSON-ish values: scalars, lists and objects of them, sometimes nested beyond
    what the gateway accepts."""
    nested = st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )
    return st.one_of(nested, st.integers(60, 80).map(_deep))


def objects(max_leaves: int = 12) -> st.SearchStrategy[dict[str, Any]]:
    """JSON-ish objects (what tool arguments and run inputs are)."""
    return st.dictionaries(_keys, documents(max_leaves), max_size=5)
