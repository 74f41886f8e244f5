# Grants: which roles may call which tools, under which constraints and approvals.
#
# A grant in data.gateway_data.grants:
#   {"role": "agent",                       # one of the subject's roles
#    "tool": "demo__read_file",             # a gateway tool name, or "<server>__*"
#    "tenant": "acme",                      # optional: only for subjects of this tenant
#    "max_risk": "medium",                  # optional: only tools at or below this tier
#    "constraints": [{"kind": "relative_path", "argument": "path"}],   # optional
#    "approval": {"approvers": ["role:approver"], "ttl_s": 3600}}      # optional
package gateway

import rego.v1

# Grants naming one of the caller's roles, this tool (or its server) and the caller's
# tenant. A grant without "tenant" serves every tenant.
grants_for_tool(resource) := {grant |
	names := tool_patterns(resource)
	some grant in grants
	grant.role in input.subject.roles
	grant.tool in names
	object.get(grant, "tenant", subject_tenant) == subject_tenant
}

subject_tenant := object.get(input.subject, "tenant", null)

# Of those, the ones whose risk limits admit the tool's tier.
grants_within_risk(resource) := {grant |
	some grant in grants_for_tool(resource)
	within_risk_limits(grant, resource)
}

applicable_grants := grants_within_risk(input.resource)

# What a grant's "tool" may say to cover this tool: its name, or "<server>__*".
tool_patterns(resource) := [resource.tool, concat("", [resource.server, "__*"])] if {
	is_string(resource.server)
} else := [resource.tool]

# Applicable grants whose every constraint holds for these arguments.
satisfied_grants contains grant if {
	some grant in applicable_grants
	every constraint in object.get(grant, "constraints", []) {
		constraint_holds(constraint)
	}
}

constraint_violations contains msg if {
	some grant in applicable_grants
	some constraint in object.get(grant, "constraints", [])
	not constraint_holds(constraint)
	msg := concat("", ["argument '", text(constraint.argument), "' violates constraint ", text(constraint.kind)])
}

# The approvals a call through `candidates` (grants) on `resource` waits for: the
# grants' own, when every one of them asks for approval (a grant without one lets the
# call through), and the risk tier's.
approval_gates(candidates, resource) := _grant_gates(candidates) | risk_gates(resource)

_grant_gates(candidates) := {gate |
	count(free_grants(candidates)) == 0
	some grant in candidates
	gate := {
		"source": "grant",
		"approvers": object.get(grant.approval, "approvers", []),
		"ttl_s": object.get(grant.approval, "ttl_s", approval_ttl_s),
	}
}

# The grants that ask for no approval.
free_grants(candidates) := [grant | some grant in candidates; not is_object(object.get(grant, "approval", null))]

no_grant_reason(tool) := concat("", ["no grant lets roles ", roles_text, " call ", text(tool)])
