package gateway_test

import rego.v1

import data.gateway

test_exact_tool_grant_only_that_tool if {
	d := gateway.decision with input as call(["agent"], "demo__echoes", {})
	d.rule == "no_grant"
}

test_server_wildcard_covers_only_its_server if {
	grants := [{"role": "ops", "tool": "github__*"}]
	ok := gateway.decision with input as call(["ops"], "github__create_issue", {}) with data.gateway_data.grants as grants
	ok.allow
	other := gateway.decision with input as call(["ops"], "gitlab__create_issue", {}) with data.gateway_data.grants as grants
	other.rule == "no_grant"

	# The server, not a prefix of the tool name, decides.
	tricky := gateway.decision with input as object.union(call(["ops"], "github__x", {}), {"resource": {"server": "evil"}})
		with data.gateway_data.grants as grants
	tricky.rule == "no_grant"
}

test_wildcard_needs_a_string_server if {
	grants := [{"role": "ops", "tool": "null__*"}]
	d := gateway.decision with input as object.union(call(["ops"], "x__y", {}), {"resource": {"server": null}})
		with data.gateway_data.grants as grants
	d.rule == "no_grant"
}

test_role_must_match if {
	d := gateway.decision with input as call(["agents"], "demo__echo", {})
	d.rule == "no_grant"
}

test_tenant_grant if {
	grants := [{"role": "agent", "tool": "demo__echo", "tenant": "acme"}]
	acme := gateway.decision with input as as_subject(call(["agent"], "demo__echo", {}), {"tenant": "acme"})
		with data.gateway_data.grants as grants
	acme.allow
	other := gateway.decision with input as as_subject(call(["agent"], "demo__echo", {}), {"tenant": "globex"})
		with data.gateway_data.grants as grants
	other.rule == "no_grant"
	none := gateway.decision with input as call(["agent"], "demo__echo", {}) with data.gateway_data.grants as grants
	none.rule == "no_grant"
}

test_grant_without_tenant_serves_every_tenant if {
	d := gateway.decision with input as as_subject(call(["agent"], "demo__echo", {}), {"tenant": "acme"})
	d.allow
}

test_free_grant_wins_over_approval_grant if {
	grants := [
		{"role": "agent", "tool": "demo__echo", "approval": {"approvers": ["role:approver"]}},
		{"role": "ops", "tool": "demo__echo"},
	]
	d := gateway.decision with input as call(["agent", "ops"], "demo__echo", {}) with data.gateway_data.grants as grants
	d.rule == "grant"
}

test_approval_grants_union_and_shortest_ttl if {
	grants := [
		{"role": "agent", "tool": "demo__echo", "approval": {"approvers": ["role:b", "role:a"], "ttl_s": 600}},
		{"role": "ops", "tool": "demo__echo", "approval": {"approvers": ["user:carol"]}},
	]
	d := gateway.decision with input as call(["agent", "ops"], "demo__echo", {}) with data.gateway_data.grants as grants
	d.rule == "approval_grant"
	d.obligations.approvers == ["role:a", "role:b", "user:carol"]
	d.obligations.approval_ttl_s == 600
	d.reasons == ["demo__echo needs approval by role:a, role:b, user:carol"]
}

test_approval_false_is_no_approval if {
	grants := [{"role": "agent", "tool": "demo__echo", "approval": false}]
	d := gateway.decision with input as call(["agent"], "demo__echo", {}) with data.gateway_data.grants as grants
	d.rule == "grant"
}

test_approval_grant_with_failing_constraint_is_denied if {
	grants := [{"role": "agent", "tool": "demo__echo", "constraints": [{"kind": "one_of", "argument": "a", "values": [1]}], "approval": {"approvers": ["role:approver"]}}]
	d := gateway.decision with input as call(["agent"], "demo__echo", {"a": 2}) with data.gateway_data.grants as grants
	d.rule == "argument_constraint"
}
