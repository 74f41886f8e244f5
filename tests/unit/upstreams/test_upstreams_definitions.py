"""Tool definitions: hashes that pin what an approver saw, names and risk."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
import rfc8785

from gateway.config import RiskConfig
from gateway.upstreams.definitions import (
    UpstreamTool,
    assess_risk,
    definition_hash,
    gateway_name,
    to_definition,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"table": {"type": "string"}, "ids": {"type": "array"}},
    "required": ["table"],
}
TOOL = UpstreamTool(
    name="delete_records",
    description="Deletes rows",
    input_schema=SCHEMA,
    output_schema={"type": "object"},
    annotations={"destructiveHint": True, "title": "Delete"},
)


def test_hash_is_sha256_of_the_jcs_document() -> None:
    document = {
        "name": TOOL.name,
        "description": TOOL.description,
        "inputSchema": TOOL.input_schema,
        "outputSchema": TOOL.output_schema,
        "annotations": TOOL.annotations,
    }
    assert definition_hash(TOOL) == hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def test_hash_is_stable_under_key_order() -> None:
    reordered = UpstreamTool(
        name="delete_records",
        description="Deletes rows",
        input_schema={
            "required": ["table"],
            "properties": {"ids": {"type": "array"}, "table": {"type": "string"}},
            "type": "object",
        },
        output_schema={"type": "object"},
        annotations={"title": "Delete", "destructiveHint": True},
    )
    assert definition_hash(reordered) == definition_hash(TOOL)


@pytest.mark.parametrize(
    "change",
    [
        {"name": "delete_rows"},
        {"description": "Deletes rows, carefully"},
        {"description": None},
        {"input_schema": {**SCHEMA, "required": ["table", "ids"]}},
        {"output_schema": None},
        {"annotations": {"destructiveHint": False, "title": "Delete"}},
        {"annotations": None},
    ],
)
def test_hash_changes_with_what_the_model_is_told(change: dict[str, Any]) -> None:
    assert definition_hash(replace(TOOL, **change)) != definition_hash(TOOL)


def test_title_is_not_part_of_the_hash() -> None:
    assert definition_hash(replace(TOOL, title="Shiny")) == definition_hash(TOOL)


def test_gateway_name() -> None:
    assert gateway_name("github", "create_issue") == "github__create_issue"


def tool(annotations: dict[str, Any] | None, name: str = "t") -> UpstreamTool:
    return UpstreamTool(name=name, description=None, input_schema={}, annotations=annotations)


@pytest.mark.parametrize(
    ("annotations", "config", "trusted", "expected"),
    [
        # config naming the tool wins over everything
        ({"destructiveHint": True}, RiskConfig(tools={"t": "low"}), True, "low"),
        ({"readOnlyHint": True}, RiskConfig(tools={"t": "high"}, default="low"), True, "high"),
        # trusted annotations: destructive beats read-only, both beat the default
        ({"destructiveHint": True}, RiskConfig(default="low"), True, "high"),
        ({"destructiveHint": True, "readOnlyHint": True}, RiskConfig(), True, "high"),
        ({"readOnlyHint": True}, RiskConfig(default="high"), True, "low"),
        # only a literal true counts
        ({"destructiveHint": "yes", "readOnlyHint": 1}, RiskConfig(), True, "medium"),
        ({"destructiveHint": False}, RiskConfig(default="low"), True, "low"),
        # untrusted annotations are ignored
        ({"readOnlyHint": True}, RiskConfig(), False, "medium"),
        ({"readOnlyHint": True}, RiskConfig(default="high"), False, "high"),
        ({"destructiveHint": True}, RiskConfig(default="low"), False, "low"),
        # no annotations: default, then medium
        (None, RiskConfig(default="low"), True, "low"),
        ({}, RiskConfig(), True, "medium"),
        # a config entry for another tool does not apply
        ({"readOnlyHint": True}, RiskConfig(tools={"other": "high"}), True, "low"),
    ],
)
def test_assess_risk_precedence(
    annotations: dict[str, Any] | None, config: RiskConfig, trusted: bool, expected: str
) -> None:
    assert assess_risk(tool(annotations), config, trust_annotations=trusted) == expected


def test_to_definition_names_hashes_and_assesses() -> None:
    definition = to_definition(
        "db", TOOL, risk=RiskConfig(), trust_annotations=True, labels=("prod",)
    )
    assert definition.name == "db__delete_records"
    assert definition.server == "db"
    assert definition.upstream_tool == "delete_records"
    assert definition.risk == "high"
    assert definition.definition_hash == definition_hash(TOOL)
    assert definition.labels == ("prod",)
    assert definition.to_policy_resource()["risk"] == "high"
    untrusted = to_definition("db", TOOL, risk=RiskConfig(), trust_annotations=False)
    assert untrusted.risk == "medium"
    assert (
        to_definition("db", tool(None), risk=RiskConfig(), trust_annotations=True).annotations == {}
    )
