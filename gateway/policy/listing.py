"""A list in one decision: the part of the catalog a principal may see.

``tools/list`` used to ask ``data.gateway.decision`` once per catalog tool (≈ 1 s for
1,000 tools, stalling every other request meanwhile). It now asks
``data.gateway.visible`` once, with every item:

    {"version": 1, "action": "tools/list", "subject": {…as for a call…},
     "items": [resource, …]}            # each what tools/call sees as input.resource

and expects ``{"visible": ["<tool name>", …]}``. The input has no ``context``: no
time, no request id, no client, no transport. The answer can therefore depend on
nothing but the subject, the policy and the catalog, and is cached under exactly those:
a digest of the subject document (sub, iss, roles, scopes, tenant, delegation chain,
claims), the policy revision, and a digest of the items. A policy must not make
visibility depend on anything else (docs/policies.md, "Lists").

Shaped for every kind of list (``action`` names it; ``items`` are that kind's
resources): ``tools/list`` (names are ``item.tool``), ``prompts/list``
(``item.prompt``) and ``resources/list`` (``item.uri``: resources and templates).

Asked through the `Decider`, so a list waits in the same bounded queue as every
decision and has the same deadline; one that cannot start in time, or gets no answer
from the engine (a timeout, an unreachable sidecar), is `PolicyUnavailable` (503), as
for a call. Fail closed: an engine error or a malformed answer shows nothing (and is
logged). A policy written before
``gateway/visible`` existed (`ListUnsupported`) is asked per item, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from gateway.errors import PolicyError, PolicyUnavailable
from gateway.policy.input import POLICY_INPUT_VERSION
from gateway.types import Principal, ToolDefinition

if TYPE_CHECKING:
    from gateway.policy.decider import Decider

log = logging.getLogger(__name__)

ListAction = Literal["tools/list", "prompts/list", "resources/list"]
# Answers kept: one per (subject, policy revision, catalog) seen recently.
CACHE_ENTRIES = 256
# Catalog digests kept: one per list of definitions seen recently (views, kinds).
DIGESTS_KEPT = 8


class ListUnsupported(PolicyError):
    """The policy has no ``gateway/visible`` (one written before it existed)."""

    code = "policy_list_unsupported"


class ListMalformed(PolicyError):
    """``gateway/visible`` answered something other than ``{"visible": [names]}``."""

    code = "policy_result_malformed"


def list_input(
    principal: Principal, action: ListAction, items: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The input of ``data.gateway.visible``: no context, by design (see above)."""
    return {
        "version": POLICY_INPUT_VERSION,
        "action": action,
        "subject": principal.to_policy_subject(),
        "items": list(items),
    }


def parse_visible(raw: Any) -> frozenset[str]:
    """The names in a ``gateway/visible`` answer; raises `ListMalformed`."""
    if not isinstance(raw, dict) or not isinstance(raw.get("visible"), list):
        raise ListMalformed('policy list result is malformed: expected {"visible": [names]}')
    names = raw["visible"]
    if not all(isinstance(name, str) for name in names):
        raise ListMalformed("policy list result is malformed: visible holds a non-string")
    return frozenset(names)


def catalog_digest(tools: Sequence[ToolDefinition]) -> str:
    """The catalog revision a list answer is cached under: every field of every item's
    resource (the definition hash covers name, description, schemas and annotations;
    risk and labels come from the config)."""
    digest = hashlib.sha256()
    for tool in tools:
        fields = (tool.name, tool.server, tool.upstream_tool, tool.definition_hash, tool.risk)
        digest.update("\0".join(fields + tool.labels).encode("utf-8", "surrogatepass"))
        digest.update(b"\1")
    return digest.hexdigest()


def subject_digest(principal: Principal) -> str:
    document = principal.to_policy_subject()
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Listed(Protocol):
    def to_policy_resource(self) -> dict[str, Any]: ...


_Item = TypeVar("_Item", bound=Listed)


def resources_digest(items: Sequence[Listed]) -> str:
    """The revision of a list of prompts, resources or templates: every field policy
    sees of each (their definition hash covers what they say; labels are config)."""
    digest = hashlib.sha256()
    for item in items:
        text = json.dumps(item.to_policy_resource(), sort_keys=True, separators=(",", ":"))
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\1")
    return digest.hexdigest()


class VisibleItems(Generic[_Item]):
    """Answers "which of these may this principal see?" with one decision, cached.
    ``name_of`` is what the answer names an item by (``item.tool`` for tools…)."""

    def __init__(
        self,
        action: ListAction,
        name_of: Callable[[_Item], str],
        digest: Callable[[Sequence[_Item]], str],
    ) -> None:
        self._action = action
        self._name_of = name_of
        self._digest = digest
        self._cache: OrderedDict[tuple[str, str, str], frozenset[str]] = OrderedDict()
        # ids of the items listed, in order -> (the items, their digest).
        self._digests: OrderedDict[tuple[int, ...], tuple[tuple[_Item, ...], str]] = OrderedDict()

    async def visible(
        self, decider: Decider, principal: Principal, listed: Sequence[_Item]
    ) -> list[_Item]:
        """The items of ``listed`` the policy shows ``principal``, in their order.
        Raises `ListUnsupported` for a policy without ``gateway/visible``; any other
        failure shows nothing."""
        catalog = self._catalog_digest(listed)
        key = (subject_digest(principal), decider.revision or "", catalog)
        # A revision that does not follow the policy's changes keys nothing.
        cacheable = decider.revision_follows_policy
        names = self._cache.get(key) if cacheable else None
        if names is None:
            items = [item.to_policy_resource() for item in listed]
            names, revision = await self._ask(decider, principal, items)
            if names is None:
                return []
            if cacheable:
                # Keyed by the revision that answered: a reload meanwhile, a new key.
                self._remember((key[0], revision or "", catalog), names)
        else:
            self._cache.move_to_end(key)
        return [item for item in listed if self._name_of(item) in names]

    def _catalog_digest(self, listed: Sequence[_Item]) -> str:
        """The digest of ``listed``, computed once per list of the same objects. An
        item is immutable and the catalog makes a new object for a changed one (as
        `gateway.surfaces.wire_forms` relies on too), so the ids of the objects, in
        order, name their digest while the objects are held here."""
        ids = tuple(map(id, listed))
        kept = self._digests.get(ids)
        if kept is None:
            kept = (tuple(listed), self._digest(listed))
            self._digests[ids] = kept
            while len(self._digests) > DIGESTS_KEPT:
                self._digests.popitem(last=False)
        else:
            self._digests.move_to_end(ids)
        return kept[1]

    async def _ask(
        self, decider: Decider, principal: Principal, items: list[dict[str, Any]]
    ) -> tuple[frozenset[str] | None, str | None]:
        policy_input = list_input(principal, self._action, items)
        try:
            raw, revision = await decider.evaluate_list(policy_input)
            return parse_visible(raw), revision
        except (ListUnsupported, PolicyUnavailable):
            raise  # an older policy, or overload (503): not a "show nothing"
        except PolicyError as exc:
            reason = exc.message
        except Exception as exc:  # an engine bug must still show nothing
            log.exception("policy engine %s failed on a list", decider.engine.name)
            reason = f"policy engine error ({type(exc).__name__})"
        log.warning("%s shows nothing (fail closed): %s", self._action, reason)
        return None, None

    def _remember(self, key: tuple[str, str, str], names: frozenset[str]) -> None:
        self._cache[key] = names
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)


class VisibleTools(VisibleItems[ToolDefinition]):
    """Answers "which tools may this principal see?" with one decision, cached."""

    def __init__(self) -> None:
        super().__init__("tools/list", lambda tool: tool.name, catalog_digest)
