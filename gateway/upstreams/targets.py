"""What an operation acts on, resolved by the catalog for the pipeline: one class per
MCP method that reaches an upstream (architecture.md §2).

The pipeline asks every target the same things, in the same order, whatever the
method: check the arguments (`validate`), say what policy sees (`policy_resource`,
under the method's action), forward (`forward`, with the upstream's own credential
headers, never the agent's token) and say what the outcome record adds
(`outcome_fields`). A target exists only for what the catalog can route: a known,
checked definition, or a resource URI of a known upstream; a quarantined definition
never becomes a target (the catalog raises).

- `CatalogEntry`: a tool (``tools/call``), arguments checked against its input schema;
- `PromptTarget`: a prompt (``prompts/get``), arguments a map of strings holding every
  required one;
- `ReadTarget`: a resource URI (``resources/read``), no arguments; the listed resource
  or the template the URI matches, when there is one, says what it is;
- `SubscribeTarget`: the same URI subscribed to (``resources/subscribe``);
- `CompletionTarget`: the prompt or template whose argument is completed;
- `LogLevelTarget` (`log_level_target`): the log level a calling session sets
  (``logging/setLevel``), passed on to its own upstream sessions (docs/decisions/0034).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import mcp_types as types
from jsonschema.protocols import Validator

from gateway.config import HttpUpstream, McpHttpUpstream, McpStdioUpstream
from gateway.errors import InvalidArguments
from gateway.offerings import PromptDefinition, ResourceDefinition, TemplateDefinition
from gateway.operations import Operation
from gateway.types import CallMethod, McpResult, ToolDefinition, ToolResult, UpstreamTask
from gateway.upstreams.base import OfferingsClient, UpstreamClient
from gateway.upstreams.credentials import CredentialProvider
from gateway.upstreams.log_level_target import LogLevelTarget
from gateway.upstreams.mcp_offerings import content_size, namespaced_content

UpstreamConfig = McpHttpUpstream | McpStdioUpstream | HttpUpstream


@dataclass(frozen=True)
class CatalogEntry:
    """A tool (``tools/call``)."""

    definition: ToolDefinition
    upstream: UpstreamClient
    config: UpstreamConfig
    credentials: CredentialProvider
    validator: Validator

    method: CallMethod = "tools/call"

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def definition_hash(self) -> str:
        return self.definition.definition_hash

    def policy_resource(self) -> dict[str, Any]:
        return self.definition.to_policy_resource()

    def validate(self, arguments: dict[str, Any]) -> None:
        """Raises `InvalidArguments` naming the first offending field."""
        check_arguments(self.definition.name, self.validator, arguments)

    async def forward(
        self, operation: Operation, headers: dict[str, str]
    ) -> ToolResult | UpstreamTask:
        if operation.task is not None:  # the upstream's own task, if it serves them
            tasks = getattr(self.upstream, "tasks", None)
            if tasks is not None and tasks.serves(self.definition.upstream_tool):
                return await tasks.call(
                    self.definition.upstream_tool,
                    operation.arguments,
                    task=operation.task,
                    meta=None,
                    headers=headers,
                    timeout_s=self.config.timeout_s,
                    client_input=operation.client_input,
                )
        result = await self.upstream.call_tool(
            self.definition.upstream_tool,
            operation.arguments,
            headers=headers,
            idempotency_key=operation.idempotency_key,
            progress=operation.progress,
            log=operation.log,
            timeout_s=self.config.timeout_s,
            client_input=operation.client_input,
            session=operation.session,
        )
        return self.namespaced(result)

    def namespaced(self, result: ToolResult) -> ToolResult:
        """Resources a result names, in the gateway's URIs (decision 0016)."""
        if not any(item.get("type") in ("resource", "resource_link") for item in result.content):
            return result
        server = self.definition.server
        content = [namespaced_content(server, item) for item in result.content]
        return ToolResult(content, result.structured_content, result.is_error)

    def outcome_fields(self, result: ToolResult | McpResult) -> dict[str, Any]:
        assert isinstance(result, ToolResult)
        return {"is_error": result.is_error}


@dataclass(frozen=True)
class _McpTarget:
    """What the prompt, read and completion targets share: an MCP upstream."""

    server: str
    upstream: OfferingsClient
    config: UpstreamConfig
    credentials: CredentialProvider


@dataclass(frozen=True)
class PromptTarget(_McpTarget):
    """A prompt (``prompts/get``)."""

    definition: PromptDefinition
    method: CallMethod = "prompts/get"

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def definition_hash(self) -> str:
        return self.definition.definition_hash

    def policy_resource(self) -> dict[str, Any]:
        return self.definition.to_policy_resource()

    def validate(self, arguments: dict[str, Any]) -> None:
        _check_string_map(arguments, "arguments")
        missing = [a for a in self.definition.required_arguments() if a not in arguments]
        if missing:
            raise InvalidArguments(
                f"prompt {self.name} needs the argument(s) {', '.join(missing)}",
                details={"missing": missing},
            )

    async def forward(self, operation: Operation, headers: dict[str, str]) -> McpResult:
        document = await self.upstream.get_prompt(
            self.definition.upstream_name,
            operation.arguments,
            headers=headers,
            log=operation.log,
            timeout_s=self.config.timeout_s,
            client_input=operation.client_input,
            session=operation.session,
        )
        return McpResult(self.method, document)

    def outcome_fields(self, result: ToolResult | McpResult) -> dict[str, Any]:
        assert isinstance(result, McpResult)
        return {"message_count": len(result.document.get("messages", []))}


@dataclass(frozen=True)
class ReadTarget(_McpTarget):
    """A resource URI (``resources/read``), in the gateway's form and the upstream's."""

    uri: str
    upstream_uri: str
    # The listed resource with this URI, else the approved template the URI matches.
    resource: ResourceDefinition | None
    template: TemplateDefinition | None
    method: CallMethod = "resources/read"

    @property
    def name(self) -> str:
        return self.uri

    @property
    def definition_hash(self) -> str | None:
        if self.resource is not None:
            return self.resource.definition_hash
        return self.template.definition_hash if self.template is not None else None

    def policy_resource(self) -> dict[str, Any]:
        listed = self.resource
        return {
            "kind": "resource",
            "uri": self.uri,
            "server": self.server,
            "upstream_uri": self.upstream_uri,
            "name": listed.name if listed else None,
            "mime_type": listed.mime_type if listed else None,
            "template": self.template.uri_template if self.template else None,
            "definition_hash": self.definition_hash,
            "labels": list(self.config.labels),
        }

    def validate(self, arguments: dict[str, Any]) -> None:
        if arguments:
            raise InvalidArguments("resources/read takes no arguments besides the URI")

    async def forward(self, operation: Operation, headers: dict[str, str]) -> McpResult:
        document = await self.upstream.read_resource(
            self.upstream_uri,
            headers=headers,
            log=operation.log,
            timeout_s=self.config.timeout_s,
            client_input=operation.client_input,
            session=operation.session,
        )
        return McpResult(self.method, document)

    def outcome_fields(self, result: ToolResult | McpResult) -> dict[str, Any]:
        assert isinstance(result, McpResult)
        # The contents' hash is the outcome's result_sha256.
        return {
            "uri": self.uri,
            "upstream_uri": self.upstream_uri,
            "size": content_size(result.document),
        }


@dataclass(frozen=True)
class CompletionTarget(_McpTarget):
    """The prompt or template whose argument ``completion/complete`` completes."""

    ref: Literal["ref/prompt", "ref/resource"]
    prompt: PromptDefinition | None
    template: TemplateDefinition | None
    # The names the argument may have: the prompt's arguments, the template's variables.
    argument_names: tuple[str, ...]
    method: CallMethod = "completion/complete"

    @property
    def name(self) -> str:
        if self.prompt is not None:
            return self.prompt.name
        assert self.template is not None
        return self.template.uri_template

    @property
    def definition_hash(self) -> str:
        definition = self.prompt or self.template
        assert definition is not None
        return definition.definition_hash

    def policy_resource(self) -> dict[str, Any]:
        definition = self.prompt or self.template
        assert definition is not None
        return {"ref": self.ref, **definition.to_policy_resource()}

    def validate(self, arguments: dict[str, Any]) -> None:
        argument = arguments.get("argument")
        context = arguments.get("context", {})
        if set(arguments) - {"argument", "context"} or not isinstance(argument, dict):
            raise InvalidArguments("a completion needs argument {name, value} and no more")
        _check_string_map(argument, "argument")
        if set(argument) != {"name", "value"}:
            raise InvalidArguments("a completion's argument has exactly a name and a value")
        if argument["name"] not in self.argument_names:
            raise InvalidArguments(
                f"{self.name} has no argument {argument['name']!r} to complete",
                details={"arguments": list(self.argument_names)},
            )
        if not isinstance(context, dict) or set(context) - {"arguments"}:
            raise InvalidArguments("a completion's context holds only arguments")
        _check_string_map(context.get("arguments", {}), "context.arguments")

    async def forward(self, operation: Operation, headers: dict[str, str]) -> McpResult:
        ref: types.PromptReference | types.ResourceTemplateReference
        if self.prompt is not None:
            ref = types.PromptReference(name=self.prompt.upstream_name)
        else:
            assert self.template is not None
            ref = types.ResourceTemplateReference(uri=self.template.upstream_uri_template)
        context = operation.arguments.get("context", {}).get("arguments")
        document = await self.upstream.complete(
            ref,
            operation.arguments["argument"],
            context,
            headers=headers,
            timeout_s=self.config.timeout_s,
            session=operation.session,
        )
        return McpResult(self.method, document)

    def outcome_fields(self, result: ToolResult | McpResult) -> dict[str, Any]:
        assert isinstance(result, McpResult)
        return {"value_count": len(result.document.get("completion", {}).get("values", []))}


@dataclass(frozen=True)
class SubscribeTarget(ReadTarget):
    """A resource URI subscribed to (``resources/subscribe``, or a URI of a 2026-07-28
    ``subscriptions/listen``): decided like a read of it, and forwarded as a
    subscription of the upstream (one per upstream URI however many clients ask)."""

    method: CallMethod = "resources/subscribe"

    @classmethod
    def of(cls, read: ReadTarget) -> SubscribeTarget:
        return cls(
            read.server,
            read.upstream,
            read.config,
            read.credentials,
            read.uri,
            read.upstream_uri,
            read.resource,
            read.template,
        )

    async def forward(self, operation: Operation, headers: dict[str, str]) -> McpResult:
        await self.upstream.subscribe_resource(
            self.upstream_uri,
            headers=headers,
            timeout_s=self.config.timeout_s,
            session=operation.session,
        )
        return McpResult(self.method, {})

    def outcome_fields(self, result: ToolResult | McpResult) -> dict[str, Any]:
        return {"uri": self.uri, "upstream_uri": self.upstream_uri}


Target = (
    CatalogEntry | PromptTarget | ReadTarget | SubscribeTarget | CompletionTarget | LogLevelTarget
)


def _check_string_map(value: Any, what: str) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArguments(f"{what} must map names to strings")


def check_arguments(tool: str, validator: Validator, arguments: dict[str, Any]) -> None:
    """Raises `InvalidArguments` naming the first field of ``arguments`` that does not
    match ``tool``'s input schema (``validator``)."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return
    where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
    raise InvalidArguments(
        f"arguments do not match the input schema of {tool}: {where}: {error.message}",
        details={"path": list(error.absolute_path), "validator": error.validator},
    )
