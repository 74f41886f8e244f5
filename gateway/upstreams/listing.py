"""One upstream's offerings in the gateway's terms, as of its last checked refresh.

`build_listing` names and hashes what an upstream lists (tools, prompts, resources,
resource templates) and says what its pins must check; the catalog installs the
listing only once the pins are checked. A tool whose input schema is invalid, or a
template that is not an RFC 6570 template, is left out (logged), never offered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from gateway.offerings import PromptDefinition, ResourceDefinition, TemplateDefinition
from gateway.upstreams.base import UpstreamClient
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.definitions import definition_document, to_definition
from gateway.upstreams.mcp_definitions import (
    UpstreamOfferings,
    prompt_document,
    resource_document,
    template_document,
    to_prompt,
    to_resource,
    to_template,
)
from gateway.upstreams.pin_plan import Seen
from gateway.upstreams.targets import CatalogEntry, UpstreamConfig

log = logging.getLogger(__name__)

# The lists a change is about, as MCP names their notifications.
ListName = Literal["tools", "prompts", "resources"]


@dataclass(frozen=True)
class Binding:
    """An upstream client with what the catalog needs to know about it."""

    client: UpstreamClient
    config: UpstreamConfig
    credentials: CredentialProvider


@dataclass(frozen=True)
class Listing:
    """One upstream's offerings as of its last checked refresh (quarantined included)."""

    tools: dict[str, CatalogEntry] = field(default_factory=dict)
    prompts: dict[str, PromptDefinition] = field(default_factory=dict)
    resources: dict[str, ResourceDefinition] = field(default_factory=dict)  # by gateway URI
    templates: dict[str, tuple[TemplateDefinition, UriTemplate]] = field(default_factory=dict)

    def fingerprint(self) -> dict[ListName, frozenset[str]]:
        return {
            "tools": frozenset(f"{k} {e.definition_hash}" for k, e in self.tools.items()),
            "prompts": frozenset(f"{k} {p.definition_hash}" for k, p in self.prompts.items()),
            "resources": frozenset(
                [f"{k} {r.definition_hash}" for k, r in self.resources.items()]
                + [f"{k} {t.definition_hash}" for k, (t, _) in self.templates.items()]
            ),
        }


def matches(parsed: UriTemplate, uri: str) -> bool:
    try:
        return parsed.match(uri) is not None
    except ValueError:
        return False


def build_listing(
    binding: Binding, tools: list[Any], offerings: UpstreamOfferings
) -> tuple[Listing, list[Seen]]:
    """An upstream's lists in the gateway's terms, and what its pins must check."""
    config = binding.config
    name = config.name
    labels = tuple(config.labels)
    listing = Listing()
    seen: list[Seen] = []
    for tool in tools:
        definition = to_definition(
            name,
            tool,
            risk=config.risk,
            trust_annotations=config.trust_annotations,
            labels=labels,
        )
        try:
            validator = validator_for(definition.input_schema)
        except SchemaError as exc:
            log.warning(
                "tool %s has an invalid input schema, not offered: %s",
                definition.name,
                exc.message,
            )
            continue
        listing.tools[definition.name] = CatalogEntry(
            definition, binding.client, config, binding.credentials, validator
        )
        seen.append(
            Seen(
                "tool", definition.name, name, definition.definition_hash, definition_document(tool)
            )
        )
    for prompt in offerings.prompts:
        p = to_prompt(name, prompt, labels)
        listing.prompts[p.name] = p
        seen.append(Seen("prompt", p.name, name, p.definition_hash, prompt_document(prompt)))
    for resource in offerings.resources:
        r = to_resource(name, resource, labels)
        listing.resources[r.uri] = r
        seen.append(Seen("resource", r.uri, name, r.definition_hash, resource_document(resource)))
    for template in offerings.templates:
        t = to_template(name, template, labels)
        try:
            parsed = UriTemplate.parse(template.uri_template)
        except InvalidUriTemplate as exc:
            log.warning("resource template %s is invalid, not offered: %s", t.uri_template, exc)
            continue
        listing.templates[t.uri_template] = (t, parsed)
        seen.append(
            Seen(
                "resource_template",
                t.uri_template,
                name,
                t.definition_hash,
                template_document(template),
            )
        )
    return listing, seen


def validator_for(schema: dict[str, Any]) -> Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)
