"""Published workflows over the executor harness: the real pipeline, the embedded Rego
engine with the shipped policy, the audit log and the stores on the given database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit import read_entries
from gateway.types import Principal
from gateway.workflows.service import Workflows
from gateway.workflows.store import WorkflowStore
from tests.integration.executor.harness import GRANTS, Parts, executor_parts

AUTHOR = Principal(sub="user:author", iss="https://issuer.test", roles=("workflow_author", "agent"))
RELEASER = Principal(sub="user:release", iss="https://issuer.test", roles=("release",))


@dataclass
class WorkflowParts:
    parts: Parts
    workflows: Workflows

    def pins(self, *tools: str) -> dict[str, str]:
        catalog = self.parts.executor.deps.catalog
        return {name: catalog.resolve(name).definition_hash for name in tools}

    def manifest(self, version: str = "1.0.0", **changes: Any) -> dict[str, Any]:
        """A workflow that echoes its input, then writes it (needs approval per step)."""
        document = {
            "name": "greeter",
            "version": version,
            "description": "echo a name",
            "inputs": {
                "type": "object",
                "required": ["who"],
                "properties": {"who": {"type": "string"}},
            },
            "plan": {
                "steps": [
                    {"id": "hello", "tool": "up__echo", "arguments": {"text": "${{ inputs.who }}"}}
                ]
            },
            "tools": self.pins("up__echo"),
            "policy_revisions": ["rev-b", "rev-a"],
        }
        document.update(changes)
        return document

    async def publish(self, document: dict[str, Any], principal: Principal = AUTHOR) -> Any:
        return await self.workflows.publish(principal, document, request_id="req_publish")

    def audit(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in read_entries(self.parts.database, kind=kind)]


@contextlib.asynccontextmanager
async def workflow_parts(
    database_url: str, directory: Path, upstream_url: str, **kwargs: Any
) -> AsyncIterator[WorkflowParts]:
    kwargs.setdefault("grants", GRANTS)
    async with executor_parts(database_url, directory, upstream_url, **kwargs) as parts:
        workflows = Workflows(
            store=WorkflowStore(parts.database),
            executor=parts.executor,
            decider=parts.executor.deps.decider,
            audit=parts.audit,
        )
        yield WorkflowParts(parts, workflows)
