# Grants: which roles may call which tools, under which argument constraints.
#
# A grant in data.gateway_data.grants looks like
#   {"role": "agent", "tool": "demo__read_file",
#    "constraints": [{"kind": "relative_path", "argument": "path"}],
#    "approval": {"approvers": ["role:approver"], "ttl_s": 3600}}   # optional
# "tool" is an exact gateway tool name, or "<server>__*" for every tool of a server.
package gateway

import rego.v1

# Grants naming one of the caller's roles and this tool.
applicable_grants contains grant if {
	some grant in data.gateway_data.grants
	grant.role in input.subject.roles
	tool_matches(grant.tool, input.resource)
}

tool_matches(pattern, resource) if pattern == resource.tool

tool_matches(pattern, resource) if {
	endswith(pattern, "__*")
	pattern == sprintf("%s__*", [resource.server])
}

# Applicable grants whose every constraint holds for these arguments.
satisfied_grants contains grant if {
	some grant in applicable_grants
	every constraint in object.get(grant, "constraints", []) {
		constraint_holds(constraint)
	}
}

approval_grants contains grant if {
	some grant in satisfied_grants
	grant.approval
}

constraint_violations contains msg if {
	some grant in applicable_grants
	some constraint in object.get(grant, "constraints", [])
	not constraint_holds(constraint)
	msg := sprintf("argument '%s' violates constraint %s", [constraint.argument, constraint.kind])
}
