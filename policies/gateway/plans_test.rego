package gateway_test

import rego.v1

import data.gateway

test_plan_of_granted_tools_allowed if {
	plan := {"steps": [
		tool_step("s1", "demo__echo"),
		{"id": "t1", "kind": "sleep", "seconds": 5},
		object.union(tool_step("s2", "demo__read_file"), {"needs": ["s1", "t1"]}),
	]}
	d := gateway.decision with input as plan_input(["agent"], plan)
	d == {
		"allow": true,
		"require_approval": false,
		"reasons": ["allowed by plan"],
		"obligations": {"redact": [], "approvers": []},
		"rule": "plan",
	}
}

test_empty_plan_allowed if {
	d := gateway.decision with input as plan_input([], {"steps": []})
	d.rule == "plan"
}

test_plan_arguments_not_checked_at_submission if {
	# Constraints are checked when each step runs; arguments may refer to outputs.
	step := object.union(tool_step("s1", "demo__read_file"), {"arguments": {"path": "${inputs.path}"}})
	d := gateway.decision with input as plan_input(["agent"], {"steps": [step]})
	d.allow
}

test_plan_with_ungranted_tool_denied if {
	plan := {"steps": [tool_step("s1", "demo__echo"), tool_step("s2", "demo__scan")]}
	d := gateway.decision with input as plan_input(["agent"], plan)
	d == {
		"allow": false,
		"require_approval": false,
		"reasons": ["step s2: no grant lets roles agent call demo__scan"],
		"obligations": {"redact": [], "approvers": []},
		"rule": "plan_step_denied",
	}
}

test_plan_with_unknown_tool_denied if {
	d := gateway.decision with input as plan_input(["agent"], {"steps": [tool_step("s1", "demo__nope")]})
	d.reasons == ["step s1: demo__nope is not in the tool catalog"]
}

test_plan_without_catalog_denies_tool_steps if {
	inp := object.remove(plan_input(["agent"], {"steps": [tool_step("s1", "demo__echo")]}), ["resource"])
	d := gateway.decision with input as object.union(inp, {"resource": {"plan": {"steps": [tool_step("s1", "demo__echo")]}}})
	d.rule == "plan_step_denied"
}

test_plan_catalog_entry_cannot_lend_its_grant if {
	# The entry under "demo__scan" claims to be demo__echo; the step's tool decides.
	inp := object.union(plan_input(["agent"], {"steps": [tool_step("s1", "demo__scan")]}), {"resource": {"tools": {"demo__scan": resource("demo__echo", "low")}}})
	d := gateway.decision with input as inp
	d.rule == "plan_step_denied"
}

test_plan_step_above_role_risk_denied if {
	d := gateway.decision with input as plan_input(["agent"], {"steps": [tool_step("s1", "demo__delete_records")]})
		with data.gateway_data.role_max_risk as {"agent": "medium"}
	d.reasons == ["step s1: risk high of demo__delete_records is above what roles agent may call"]
}

test_plan_step_labels if {
	plan := {"steps": [{"kind": "tool", "tool": "x__y"}, {"id": 7, "tool": "x__z"}, "not a step", {"id": "s4", "tool": 5}]}
	d := gateway.decision with input as plan_input([], plan)
	d.rule == "plan_step_denied"
	d.reasons == [
		"step #0: x__y is not in the tool catalog",
		"step #1: x__z is not in the tool catalog",
		"step #2: a step must be an object",
		"step s4: the tool must be a name",
	]
}

test_plan_needing_approval if {
	plan := {"steps": [tool_step("s1", "demo__echo"), {"id": "g1", "kind": "approval"}, tool_step("s2", "demo__delete_records")]}
	d := gateway.decision with input as plan_input(["agent"], plan)
	d == {
		"allow": true,
		"require_approval": true,
		"reasons": ["plan needs approval by role:approver"],
		"obligations": {"redact": [], "approvers": ["role:approver"], "approval_ttl_s": 3600},
		"rule": "plan_approval",
	}
}

test_plan_approvals_union if {
	grants := [
		{"role": "agent", "tool": "demo__echo", "approval": {"approvers": ["user:bob"], "ttl_s": 300}},
		{"role": "agent", "tool": "demo__scan"},
	]
	plan := {"steps": [tool_step("s1", "demo__echo"), tool_step("s2", "demo__scan")]}
	d := gateway.decision with input as plan_input(["agent"], plan)
		with data.gateway_data.grants as grants
		with data.gateway_data.approval_for_risk as {"min_risk": "medium", "approvers": ["role:approver"], "ttl_s": 900}
	d.obligations.approvers == ["role:approver", "user:bob"]
	d.obligations.approval_ttl_s == 300
}

test_plan_too_long if {
	plan := {"steps": [{"id": "t1", "kind": "sleep"}, {"id": "t2", "kind": "sleep"}, {"id": "t3", "kind": "sleep"}]}
	d := gateway.decision with input as plan_input(["agent"], plan) with data.gateway_data.max_plan_steps as 2
	d.rule == "plan_too_long"
	d.reasons == ["plan has 3 steps; at most 2 allowed"]
	ok := gateway.decision with input as plan_input(["agent"], plan) with data.gateway_data.max_plan_steps as 3
	ok.allow
}

test_plan_malformed if {
	every resource in [{}, {"plan": null}, {"plan": {}}, {"plan": {"steps": {}}}, {"plan": {"steps": "s1"}}] {
		inp := object.union(plan_input(["agent"], {}), {"resource": resource})
		d := gateway.decision with input as object.union(object.remove(inp, ["resource"]), {"resource": resource})
		d.rule == "plan_malformed"
	}
}

test_plan_chain_rules if {
	inp := with_chain(plan_input(["agent"], {"steps": []}), ["a", "b", "c", "d", "e"])
	d := gateway.decision with input as inp
	d.rule == "delegation_chain"
}

test_plan_compensation_tools_are_checked if {
	step := object.union(tool_step("s1", "demo__echo"), {"compensate": {"tool": "demo__scan", "arguments": {}}})
	d := gateway.decision with input as plan_input(["agent"], {"steps": [step]})
	d.reasons == ["step s1 (compensate): no grant lets roles agent call demo__scan"]
	granted := object.union(tool_step("s1", "demo__echo"), {"compensate": {"tool": "demo__delete_records"}})
	a := gateway.decision with input as plan_input(["agent"], {"steps": [granted]})
	a.rule == "plan_approval"
}

test_plan_steps_without_kind if {
	# The executor leaves defaults out of a plan's JSON: a tool step may have no "kind".
	d := gateway.decision with input as plan_input(["agent"], {"steps": [{"id": "s1", "tool": "demo__scan"}]})
	d.rule == "plan_step_denied"
}
