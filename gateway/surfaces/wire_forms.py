"""Each listed definition's wire form, built once and kept while the catalog holds it.

Why: a list of 1,000 tools spent most of its time building, validating and dumping
the same 1,000 entries on every request (docs/performance.md, "Lists"). A definition
(`gateway.types.ToolDefinition`, the prompt and resource definitions of
`gateway.offerings`) is an immutable object the catalog makes when it reads an
upstream, and makes anew on every re-read; so its entry in a list, for one way of
showing it (a surface, a view, a protocol revision), is built on its first listing
and looked up after that.

Kept by the object itself, never by a name or a hash: a definition that changed is a
new object, so an entry can only ever be the wire form of the very definition being
listed. What a principal may see is decided before any of this (`gateway.lists`):
only the items a list is answered with are looked up here.

Bounded: entries of definitions the catalog no longer holds (an upstream re-read, a
definition changed, an upstream gone) are dropped when the forms have grown to twice
what the last sweep kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

_Definition = TypeVar("_Definition")
_Wire = TypeVar("_Wire")

# Entries kept beyond twice the last sweep's, before sweeping again: small lists
# (and the gateway's own tools, never in the catalog) do not sweep on every list.
SWEEP_SLACK = 64


class WireForms(Generic[_Definition, _Wire]):
    """The wire forms of definitions: ``build(definition)``, once per definition object.

    ``current`` lists the definitions the catalog holds now; it is only called when
    sweeping. Not locked: it is only used on the event loop's thread, and
    ``build`` does not await.
    """

    def __init__(
        self,
        build: Callable[[_Definition], _Wire],
        current: Callable[[], Iterable[_Definition]],
    ) -> None:
        self._build = build
        self._current = current
        # id(definition) -> (definition, wire form). The definition is held, so its
        # id cannot be reused by another object while the entry exists.
        self._forms: dict[int, tuple[_Definition, _Wire]] = {}
        self._kept = 0

    def __len__(self) -> int:
        return len(self._forms)

    def of(self, definitions: Iterable[_Definition]) -> list[_Wire]:
        """The wire forms of ``definitions``, in their order."""
        forms = self._forms
        out = []
        for definition in definitions:
            entry = forms.get(id(definition))
            if entry is None or entry[0] is not definition:
                entry = (definition, self._build(definition))
                forms[id(definition)] = entry
            out.append(entry[1])
        if len(forms) > 2 * self._kept + SWEEP_SLACK:
            self.sweep()
        return out

    def sweep(self) -> None:
        """Drops the forms of definitions the catalog no longer holds."""
        held = {id(definition) for definition in self._current()}
        self._forms = {key: entry for key, entry in self._forms.items() if key in held}
        self._kept = len(self._forms)
