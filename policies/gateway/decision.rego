# The gateway's decision (architecture.md §5, policy contract version 1).
#
# data.gateway.decision is always defined: the default below denies. Each action has
# exactly one rule, and each of those rules is one else-chain ending in a deny, so the
# result is never undefined for a known action and never a conflict.
#
# Every string in a result is built with concat, never sprintf: OPA's WebAssembly
# leaves sprintf to the host, and the embedded engine runs no policy code outside its
# sandbox, so a policy using it is refused at load (docs/policies.md, "Built-ins").
package gateway

import rego.v1

default decision := {
	"allow": false,
	"require_approval": false,
	"reasons": ["no policy rule applies to this request"],
	"obligations": {"redact": [], "approvers": []},
	"rule": "default_deny",
}

decision := call_decision if {
	input.version == 1
	input.action == "tools/call"
}

decision := list_decision if {
	input.version == 1
	input.action == "tools/list"
}

decision := plan_decision if {
	input.version == 1
	input.action == "plan/submit"
}

decision := workflow_publish_decision if {
	input.version == 1
	input.action == "workflow/publish"
}

decision := workflow_promote_decision if {
	input.version == 1
	input.action == "workflow/promote"
}

decision := approval_decision if {
	input.version == 1
	input.action == "approval/decide"
}

# --- tools/call ----------------------------------------------------------------------
#
# Order: delegation chain → a satisfied grant needing no approval (and a tool below
# the approval risk tier) → allowed once approved → failing constraints → risk tier
# above what the roles may call → no grant.

call_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("grant") if {
	count(free_grants(satisfied_grants)) > 0
	count(risk_gates(input.resource)) == 0
} else := _approval(input.resource.tool, call_gates, call_approval_rule) if {
	count(satisfied_grants) > 0
} else := _deny(constraint_violations, "argument_constraint") if {
	count(applicable_grants) > 0
} else := _deny({risk_violation(input.resource)}, "risk_tier") if {
	count(grants_for_tool(input.resource)) > 0
} else := _deny({no_grant_reason(input.resource.tool)}, "no_grant")

# The approvals a call waits for: its grants' (when every satisfied grant asks for
# one) and the risk tier's (when the tool is at or above data's approval_for_risk).
call_gates := approval_gates(satisfied_grants, input.resource)

call_approval_rule := "approval_grant" if {
	some gate in call_gates
	gate.source == "grant"
} else := "approval_risk"

# --- tools/list: a tool is visible when some grant could let the caller use it --------

list_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("list_grant") if {
	count(applicable_grants) > 0
} else := _deny({"no grant for this tool"}, "list_no_grant")

# --- lists: the visible part of a catalog, in one evaluation ---------------------------
#
# data.gateway.visible answers {"version": 1, "action": "tools/list", "subject": …,
# "items": [resource, …]} (each item what tools/call sees as input.resource) with the
# names of the items the subject may see, in catalog order. Its input carries no
# context (no time, no request id, no client): the gateway caches the answer per
# subject, policy revision and catalog revision, so it may depend on nothing else.

default visible := {"visible": []}

visible := {"visible": [item.tool | some item in input.items; list_visible(item)]} if {
	input.version == 1
	input.action == "tools/list"
	is_array(input.items)
}

# The same rule as tools/list's per-tool decision: no broken delegation chain, and
# some grant applies (constraints are not checked). The subject's grants are indexed by
# their "tool" once per list, so each item costs two lookups, not a pass over every
# grant.
list_visible(resource) if {
	count(chain_violations) == 0
	some pattern in tool_patterns(resource)
	some grant in _subject_grants_by_tool[pattern]
	within_risk_limits(grant, resource)
}

_subject_grants_by_tool[tool] := [grant | some grant in _subject_grants; grant.tool == tool] if {
	some subject_grant in _subject_grants
	tool := subject_grant.tool
}

_subject_grants := [grant |
	some grant in grants
	grant.role in input.subject.roles
	object.get(grant, "tenant", subject_tenant) == subject_tenant
]

# --- results -------------------------------------------------------------------------

_allow(rule) := {
	"allow": true,
	"require_approval": false,
	"reasons": [concat(" ", ["allowed by", rule])],
	"obligations": _allow_obligations,
	"rule": rule,
}

# Allowed once one of the gates' approvers approves; the shortest TTL wins.
_approval(what, gates, rule) := {
	"allow": true,
	"require_approval": true,
	"reasons": [concat("", [what, " needs approval by ", concat(", ", approvers)])],
	"obligations": _approval_obligations(approvers, ttl),
	"rule": rule,
} if {
	approvers := sort({a | some gate in gates; some a in gate.approvers})
	ttl := least({gate.ttl_s | some gate in gates})
}

# With "limits" (limits.rego) only when some apply, so a policy without limits returns
# the decisions it always did. Spelt out rather than merged with object.union, which
# OPA's WebAssembly leaves to the host.
_allow_obligations := {"redact": redactions, "approvers": [], "limits": call_limits} if {
	count(call_limits) > 0
} else := {"redact": redactions, "approvers": []}

_approval_obligations(approvers, ttl) := {"redact": redactions, "approvers": approvers, "approval_ttl_s": ttl, "limits": call_limits} if {
	count(call_limits) > 0
} else := {"redact": redactions, "approvers": approvers, "approval_ttl_s": ttl}

_deny(reasons, rule) := {
	"allow": false,
	"require_approval": false,
	"reasons": sort(reasons),
	"obligations": {"redact": redactions, "approvers": []},
	"rule": rule,
}
