"""The workflow manifest (``workflow.yaml``), its normalized document and content hash.

A workflow directory holds ``workflow.yaml``::

    name: cleanup-orders            # lower case, digits, - _ .
    version: 1.2.0                  # semantic version
    description: …
    inputs: {JSON Schema}           # the runs' inputs
    plan: {steps: […], deadline_s, max_tool_calls}   # the plan template
    tools: {demo__echo: "<definition hash>", …}      # every tool the plan calls, pinned
    policy_revisions: [rev, …]      # tested against (a set: revisions have no order)
    approvals: {plan: {approvers: [role:approver]}}  # added on top of policy
    scenarios: {name: {…}}          # and/or files scenarios/<name>.yaml

The document (what the client sends and what is stored) is the manifest with every
scenario inline. Normalizing it (defaults filled, revisions sorted) and hashing the
JCS of the result gives the content hash: the same content has the same hash and id
whatever its key order or YAML spelling.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.canonical import MAX_NESTING, NotIJson, check_document, sha256_hex
from gateway.executor.plan import Plan, parse_plan, problem
from gateway.executor.workflow_ref import WorkflowRef
from gateway.workflows.errors import WorkflowInvalid

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
# Semantic Versioning 2.0.0, without build metadata (it would not order versions).
VERSION_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"
CHANNEL_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"
HASH_PATTERN = r"^[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanApproval(_Model):
    approvers: list[str] = Field(min_length=1)


class AddedApprovals(_Model):
    # One review of the whole plan before any step (docs/workflows.md, "Plan review").
    plan: PlanApproval | None = None


class Manifest(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    description: str | None = Field(None, max_length=2000)
    inputs: dict[str, Any] | None = None
    plan: dict[str, Any]
    tools: dict[str, str] = {}
    policy_revisions: list[str] = []
    approvals: AddedApprovals = AddedApprovals()
    scenarios: dict[str, Any] = {}

    @field_validator("tools")
    @classmethod
    def _hashes(cls, tools: dict[str, str]) -> dict[str, str]:
        for name, value in tools.items():
            if not re.match(HASH_PATTERN, value):
                raise ValueError(f"tools.{name}: a definition hash is 64 lower-case hex digits")
        return tools

    @field_validator("policy_revisions")
    @classmethod
    def _as_set(cls, revisions: list[str]) -> list[str]:
        return sorted(set(revisions))

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def document(self) -> dict[str, Any]:
        """The normalized document: what is hashed and stored."""
        return self.model_dump(mode="json")

    @property
    def content_hash(self) -> str:
        return "sha256:" + sha256_hex(self.document())

    @property
    def id(self) -> str:
        return "wf_" + self.content_hash.removeprefix("sha256:")[:32]

    def to_plan(self) -> Plan:
        """The plan runs of this version execute: the template, named and with the
        manifest's input schema."""
        template = {k: v for k, v in self.plan.items() if k not in ("name", "description")}
        if "inputs" in template and self.inputs is not None:
            raise WorkflowInvalid(
                [problem(None, "plan.inputs", "give the input schema once, as `inputs`")]
            )
        document = {"name": self.name, **template}
        if self.description:
            document["description"] = self.description
        if self.inputs is not None:
            document["inputs"] = self.inputs
        return parse_plan(document)

    def to_ref(self, *, channel: str | None = None) -> WorkflowRef:
        approvers = tuple(self.approvals.plan.approvers) if self.approvals.plan else ()
        return WorkflowRef(
            name=self.name,
            version=self.version,
            id=self.id,
            content_hash=self.content_hash,
            channel=channel,
            tools=dict(self.tools),
            plan_approvers=approvers,
        )


def parse_manifest(document: Any) -> Manifest:
    """A `Manifest` from a decoded document; raises `WorkflowInvalid` naming each field."""
    if not isinstance(document, dict):
        raise WorkflowInvalid([problem(None, "", "a workflow manifest must be an object")])
    try:
        check_document(document, max_depth=MAX_NESTING + 8)
    except NotIJson as exc:
        raise WorkflowInvalid([problem(None, exc.pointer, exc.reason)]) from None
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        problems = [
            problem(
                None, ".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, ")
            )
            for e in exc.errors()
        ]
        raise WorkflowInvalid(problems) from None


# --- reading a directory (the CLI) -------------------------------------------------------


def read_directory(directory: Path) -> dict[str, Any]:
    """The document of a workflow directory: ``workflow.yaml`` with the scenarios of
    ``scenarios/*.yaml`` inline (a scenario named in both is an error)."""
    manifest_path = directory / "workflow.yaml"
    document = _load_yaml(manifest_path)
    if not isinstance(document, dict):
        raise WorkflowInvalid([problem(None, "", f"{manifest_path} must hold a YAML mapping")])
    scenarios = dict(document.get("scenarios") or {})
    folder = directory / "scenarios"
    if folder.is_dir():
        for path in sorted(folder.glob("*.yaml")):
            if path.stem in scenarios:
                raise WorkflowInvalid(
                    [problem(None, f"scenarios.{path.stem}", f"defined twice ({path})")]
                )
            scenarios[path.stem] = _load_yaml(path)
    if scenarios:
        document["scenarios"] = scenarios
    return document


def _load_yaml(path: Path) -> Any:
    import yaml  # lazily: serving reads no YAML (start time, docs/performance.md)

    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WorkflowInvalid([problem(None, "", f"cannot read {path}: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid([problem(None, "", f"{path} is not valid YAML: {exc}")]) from None
