# The gateway's decision (DESIGN §5, policy contract version 1).
#
# data.gateway.decision is always defined: the default below denies. Exactly one of
# the rules for each action applies, so the result is never a conflict.
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

# --- tools/call ----------------------------------------------------------------------

call_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("grant") if {
	some grant in satisfied_grants
	not grant.approval
} else := _approval(approval_grants) if {
	count(approval_grants) > 0
} else := _deny(constraint_violations, "argument_constraint") if {
	count(applicable_grants) > 0
} else := _deny({sprintf("no grant lets roles %v call %s", [input.subject.roles, input.resource.tool])}, "no_grant")

# --- tools/list: a tool is visible when some grant could let the caller use it --------

list_decision := _allow("list_grant") if {
	count(chain_violations) == 0
	count(applicable_grants) > 0
} else := _deny({"no grant for this tool"}, "list_no_grant")

# --- results -------------------------------------------------------------------------

_allow(rule) := {
	"allow": true,
	"require_approval": false,
	# concat, not sprintf: rego-cpp mangles sprintf of a string passed as a function
	# argument (see docs/policies.md, "Embedded engine differences").
	"reasons": [concat(" ", ["allowed by", rule])],
	"obligations": {"redact": redactions, "approvers": []},
	"rule": rule,
}

_approval(grants) := {
	"allow": true,
	"require_approval": true,
	"reasons": [concat("", [input.resource.tool, " needs approval by ", concat(", ", approvers)])],
	"obligations": {"redact": redactions, "approvers": approvers, "approval_ttl_s": ttl},
	"rule": "approval_grant",
} if {
	approvers := sort({a | some g in grants; some a in g.approval.approvers})
	ttl := min({object.get(g.approval, "ttl_s", data.gateway_data.approval_ttl_s) | some g in grants})
}

_deny(reasons, rule) := {
	"allow": false,
	"require_approval": false,
	"reasons": sort(reasons),
	"obligations": {"redact": redactions, "approvers": []},
	"rule": rule,
}
