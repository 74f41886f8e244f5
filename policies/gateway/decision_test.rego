package gateway_test

import rego.v1

import data.gateway

test_agent_may_echo if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {"text": "hi"})
	d == {
		"allow": true,
		"require_approval": false,
		"reasons": ["allowed by grant"],
		"obligations": {"redact": [], "approvers": []},
		"rule": "grant",
	}
}

test_no_role_no_calls if {
	d := gateway.decision with input as call([], "demo__echo", {"text": "hi"})
	not d.allow
	d.rule == "no_grant"
	d.reasons == ["no grant lets roles (none) call demo__echo"]
}

test_no_grant_names_the_roles if {
	d := gateway.decision with input as call(["guest", "ops"], "demo__echo", {})
	d.reasons == ["no grant lets roles guest, ops call demo__echo"]
}

test_read_inside_sandbox if {
	d := gateway.decision with input as call(["agent"], "demo__read_file", {"path": "notes/today.txt"})
	d.allow
}

test_read_outside_sandbox_denied if {
	every path in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\\..\\b"] {
		d := gateway.decision with input as call(["agent"], "demo__read_file", {"path": path})
		not d.allow
		d.rule == "argument_constraint"
		d.reasons == ["argument 'path' violates constraint relative_path"]
	}
}

test_delete_needs_approver if {
	d := gateway.decision with input as call_at(["agent"], "demo__delete_records", {"table": "orders", "ids": [1]}, "high")
	d == {
		"allow": true,
		"require_approval": true,
		"reasons": ["demo__delete_records needs approval by role:approver"],
		"obligations": {"redact": [], "approvers": ["role:approver"], "approval_ttl_s": 3600},
		"rule": "approval_grant",
	}
}

test_secrets_redacted if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {"text": "hi", "API_KEY": "s3cret"})
	d.obligations.redact == ["/arguments/API_KEY"]
}

test_secrets_redacted_on_every_result if {
	arguments := {"token": "t"}
	every inp in [
		call([], "demo__echo", arguments),
		call(["agent"], "demo__echo", arguments),
		call_at(["agent"], "demo__delete_records", arguments, "high"),
		with_chain(call(["agent"], "demo__echo", arguments), ["a", "b", "c", "d", "e"]),
	] {
		d := gateway.decision with input as inp
		d.obligations.redact == ["/arguments/token"]
	}
}

test_long_chain_denied if {
	d := gateway.decision with input as with_chain(call(["agent"], "demo__echo", {"text": "x"}), ["a", "b", "c", "d", "e"])
	not d.allow
	d.rule == "delegation_chain"
	d.reasons == ["delegation chain has 5 actors; at most 4 allowed"]
}

test_chain_rules_come_before_grants if {
	d := gateway.decision with input as with_chain(call([], "demo__echo", {}), ["agent:rogue"])
		with data.gateway_data.blocked_actors as ["agent:rogue"]
	d.rule == "delegation_chain"
}

test_server_wildcard_grant if {
	d := gateway.decision with input as call(["ops"], "demo__echo", {"text": "x"})
		with data.gateway_data.grants as [{"role": "ops", "tool": "demo__*"}]
	d.allow
}

test_list_visible_for_granted_tool if {
	d := gateway.decision with input as listing(["agent"], "demo__delete_records")
	d.allow
	d.rule == "list_grant"
}

test_list_hidden_without_grant if {
	d := gateway.decision with input as listing([], "demo__echo")
	not d.allow
	d.rule == "list_no_grant"
}

test_list_hidden_above_role_risk if {
	d := gateway.decision with input as object.union(listing(["agent"], "demo__echo"), {"resource": {"risk": "high"}})
		with data.gateway_data.role_max_risk as {"agent": "medium"}
	not d.allow
}

test_list_hidden_for_bad_chain if {
	d := gateway.decision with input as with_chain(listing(["agent"], "demo__echo"), ["a", "b", "c", "d", "e"])
	not d.allow
	d.rule == "delegation_chain"
}

test_unknown_version_denied if {
	inp := object.union(call(["agent"], "demo__echo", {"text": "x"}), {"version": 2})
	d := gateway.decision with input as inp
	not d.allow
	d.rule == "default_deny"
}

test_unknown_action_denied if {
	inp := object.union(call(["agent"], "demo__echo", {"text": "x"}), {"action": "tools/delete"})
	d := gateway.decision with input as inp
	d.rule == "default_deny"
}

test_empty_input_denied if {
	d := gateway.decision with input as {}
	d.rule == "default_deny"
}

test_max_length_and_one_of if {
	grants := [{"role": "agent", "tool": "demo__echo", "constraints": [{"kind": "max_length", "argument": "text", "max": 3}, {"kind": "one_of", "argument": "mode", "values": ["a", "b"]}]}]
	ok := gateway.decision with input as call(["agent"], "demo__echo", {"text": "abc", "mode": "a"}) with data.gateway_data.grants as grants
	ok.allow
	long := gateway.decision with input as call(["agent"], "demo__echo", {"text": "abcd", "mode": "a"}) with data.gateway_data.grants as grants
	not long.allow
	bad := gateway.decision with input as call(["agent"], "demo__echo", {"text": "a", "mode": "c"}) with data.gateway_data.grants as grants
	not bad.allow
	both := gateway.decision with input as call(["agent"], "demo__echo", {"text": "abcd", "mode": "c"}) with data.gateway_data.grants as grants
	both.reasons == ["argument 'mode' violates constraint one_of", "argument 'text' violates constraint max_length"]
}

# --- risk tiers in the call decision ---------------------------------------------------

test_high_risk_tool_needs_approval_by_tier if {
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "high")
	d == {
		"allow": true,
		"require_approval": true,
		"reasons": ["demo__echo needs approval by role:approver"],
		"obligations": {"redact": [], "approvers": ["role:approver"], "approval_ttl_s": 3600},
		"rule": "approval_risk",
	}
}

test_medium_risk_tool_needs_no_approval if {
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "medium")
	d.rule == "grant"
}

test_grant_and_tier_approvals_combine if {
	grants := [{"role": "agent", "tool": "demo__echo", "approval": {"approvers": ["user:bob"], "ttl_s": 600}}]
	tier := {"min_risk": "high", "approvers": ["role:security"], "ttl_s": 900}
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "high")
		with data.gateway_data.grants as grants
		with data.gateway_data.approval_for_risk as tier
	d.rule == "approval_grant"
	d.obligations.approvers == ["role:security", "user:bob"]
	d.obligations.approval_ttl_s == 600
}

test_risk_above_role_limit_denied if {
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "high")
		with data.gateway_data.role_max_risk as {"agent": "medium"}
	d == {
		"allow": false,
		"require_approval": false,
		"reasons": ["risk high of demo__echo is above what roles agent may call"],
		"obligations": {"redact": [], "approvers": []},
		"rule": "risk_tier",
	}
}

test_no_tier_approval_without_setting if {
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "high")
		with data.gateway_data.approval_for_risk as null
	d.rule == "grant"
}

# --- backward compatibility: data without the newer settings -----------------------

test_minimal_data_still_works if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {"password": "p"})
		with data.gateway_data as {"grants": [{"role": "agent", "tool": "demo__echo"}]}
	d.allow
	d.obligations.redact == ["/arguments/password"]
}

test_no_data_denies if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data as {}
	d.rule == "no_grant"
}

test_non_object_data_means_defaults if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {"token": "t"})
		with data.gateway_data as "not an object"
	d.rule == "no_grant"
	d.obligations.redact == ["/arguments/token"]
}

# --- data.gateway.visible: a whole catalog in one evaluation -----------------------------

visible_input(roles, tools) := {
	"version": 1,
	"action": "tools/list",
	"subject": subject(roles),
	"items": [resource(tool, risk) | some [tool, risk] in tools],
}

visible_catalog := [["demo__echo", "low"], ["demo__read_file", "low"], ["gh__push", "high"], ["gh__read", "low"], ["x__y", "low"]]

visible_grants := [
	{"role": "agent", "tool": "demo__echo"},
	{"role": "agent", "tool": "demo__read_file", "constraints": [{"kind": "relative_path", "argument": "path"}]},
	{"role": "ops", "tool": "gh__*", "max_risk": "medium"},
]

test_visible_lists_the_tools_some_grant_applies_to if {
	v := gateway.visible with input as visible_input(["agent", "ops"], visible_catalog) with data.gateway_data.grants as visible_grants
	v == {"visible": ["demo__echo", "demo__read_file", "gh__read"]}
}

test_visible_shows_nothing_without_roles_or_with_a_broken_chain if {
	none := gateway.visible with input as visible_input([], visible_catalog) with data.gateway_data.grants as visible_grants
	none == {"visible": []}
	inp := object.union(visible_input(["agent"], visible_catalog), {"subject": {"act_chain": [{"sub": "a"}, {"sub": "b"}, {"sub": "c"}, {"sub": "d"}, {"sub": "e"}]}})
	broken := gateway.visible with input as inp with data.gateway_data.grants as visible_grants
	broken == {"visible": []}
}

test_visible_needs_version_1_and_a_list_action if {
	v := gateway.visible with input as object.union(visible_input(["agent"], visible_catalog), {"version": 2})
	v == {"visible": []}
	w := gateway.visible with input as object.union(visible_input(["agent"], visible_catalog), {"action": "tools/call"})
	w == {"visible": []}
}
