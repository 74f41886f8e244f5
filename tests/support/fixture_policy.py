"""A small self-contained policy for tests of the policy machinery (conformance,
reload, replay): grants with optional approvers, blocked actors, secret redaction, and
an evaluation error on demand.

It does not move with the shipped policy in policies/, so tests that pin exact
decisions and reasons stay about the machinery they test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURE_REGO = """package gateway

import rego.v1

default decision := {
	"allow": false,
	"require_approval": false,
	"reasons": ["no grant for this tool"],
	"obligations": {"redact": [], "approvers": []},
	"rule": "default_deny",
}

# An "explode" argument makes two definitions of decision disagree: an evaluation
# error (a conflict) on every engine, a policy failure on demand for tests of what
# fails closed.
decision := {"allow": false, "rule": "explode"} if input.arguments.explode

decision := {"allow": false, "rule": "explode_too"} if input.arguments.explode

decision := {
	"allow": false,
	"require_approval": false,
	"reasons": ["a blocked actor is in the chain"],
	"obligations": {"redact": redactions, "approvers": []},
	"rule": "blocked_actor",
} if {
	some actor in input.subject.act_chain
	actor.sub in data.fixture.blocked_actors
} else := {
	"allow": true,
	"require_approval": true,
	"reasons": [concat("", [input.resource.tool, " needs approval by ", concat(", ", approvers)])],
	"obligations": {
		"redact": redactions,
		"approvers": approvers,
		"approval_ttl_s": data.fixture.ttl_s,
	},
	"rule": "approval_grant",
} if {
	count(approvers) > 0
} else := {
	"allow": true,
	"require_approval": false,
	"reasons": ["allowed by grant"],
	"obligations": {"redact": redactions, "approvers": []},
	"rule": "grant",
} if {
	count(grants) > 0
}

grants contains grant if {
	some grant in data.fixture.grants
	grant.tool == input.resource.tool
	grant.role in input.subject.roles
}

approvers := sort({a |
	some grant in grants
	some a in object.get(grant, "approvers", [])
})

redactions := sort(secret_paths)

secret_paths contains path if {
	some name, _ in input.arguments
	name in data.fixture.secret_names
	path := concat("", ["/arguments/", name])
}
"""


FIXTURE_DATA: dict[str, Any] = {
    "grants": [
        {"role": "agent", "tool": "demo__echo"},
        {"role": "agent", "tool": "demo__delete", "approvers": ["role:ops"]},
    ],
    "blocked_actors": [],
    "secret_names": ["api_key", "password"],
    "ttl_s": 3600,
}


def write_fixture_policy(target: Path, grants: list[dict[str, Any]], **settings: Any) -> Path:
    """The fixture policy in ``target`` (modules in ``gateway/``, data in data.json)."""
    (target / "gateway").mkdir(parents=True, exist_ok=True)
    (target / "gateway" / "decision.rego").write_text(FIXTURE_REGO)
    write_fixture_data(target, grants, **settings)
    return target


def write_fixture_data(target: Path, grants: list[dict[str, Any]], **settings: Any) -> None:
    data = {**FIXTURE_DATA, "grants": grants, **settings}
    (target / "data.json").write_text(json.dumps({"fixture": data}, indent=2))
