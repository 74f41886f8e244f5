package gateway_test

import rego.v1

import data.gateway

_subject(roles) := {"sub": "agent:test", "iss": "dev", "roles": roles, "scopes": [], "tenant": null, "act_chain": [], "claims": {}}

_call(roles, tool, arguments) := {
	"version": 1,
	"subject": _subject(roles),
	"action": "tools/call",
	"resource": {"tool": tool, "server": "demo", "upstream_tool": tool, "annotations": {}, "risk": "low", "definition_hash": "h", "labels": []},
	"arguments": arguments,
	"context": {},
}

test_agent_may_echo if {
	d := gateway.decision with input as _call(["agent"], "demo__echo", {"text": "hi"})
	d.allow
	not d.require_approval
	d.rule == "grant"
}

test_no_role_no_calls if {
	d := gateway.decision with input as _call([], "demo__echo", {"text": "hi"})
	not d.allow
	d.rule == "no_grant"
}

test_read_inside_sandbox if {
	d := gateway.decision with input as _call(["agent"], "demo__read_file", {"path": "notes/today.txt"})
	d.allow
}

test_read_outside_sandbox_denied if {
	every path in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\\..\\b"] {
		d := gateway.decision with input as _call(["agent"], "demo__read_file", {"path": path})
		not d.allow
		d.rule == "argument_constraint"
	}
}

test_delete_needs_approver if {
	d := gateway.decision with input as _call(["agent"], "demo__delete_records", {"table": "orders", "ids": [1]})
	d.allow
	d.require_approval
	d.obligations.approvers == ["role:approver"]
	d.obligations.approval_ttl_s == 3600
}

test_secrets_redacted if {
	d := gateway.decision with input as _call(["agent"], "demo__echo", {"text": "hi", "API_KEY": "s3cret"})
	d.obligations.redact == ["/arguments/API_KEY"]
}

test_long_chain_denied if {
	long := object.union(_call(["agent"], "demo__echo", {"text": "x"}), {"subject": object.union(_subject(["agent"]), {"act_chain": [{"sub": "a"}, {"sub": "b"}, {"sub": "c"}, {"sub": "d"}, {"sub": "e"}]})})
	d := gateway.decision with input as long
	not d.allow
	d.rule == "delegation_chain"
}

test_blocked_actor_denied if {
	chained := object.union(_call(["agent"], "demo__echo", {"text": "x"}), {"subject": object.union(_subject(["agent"]), {"act_chain": [{"sub": "agent:rogue"}]})})
	d := gateway.decision with input as chained with data.gateway_data.blocked_actors as ["agent:rogue"]
	not d.allow
}

test_server_wildcard_grant if {
	d := gateway.decision with input as _call(["ops"], "demo__echo", {"text": "x"})
		with data.gateway_data.grants as [{"role": "ops", "tool": "demo__*"}]
	d.allow
}

test_list_visible_for_granted_tool if {
	inp := object.union(_call(["agent"], "demo__delete_records", {}), {"action": "tools/list"})
	d := gateway.decision with input as inp
	d.allow
}

test_list_hidden_without_grant if {
	inp := object.union(_call([], "demo__echo", {}), {"action": "tools/list"})
	d := gateway.decision with input as inp
	not d.allow
}

test_unknown_version_denied if {
	inp := object.union(_call(["agent"], "demo__echo", {"text": "x"}), {"version": 2})
	d := gateway.decision with input as inp
	not d.allow
	d.rule == "default_deny"
}

test_max_length_and_one_of if {
	grants := [{"role": "agent", "tool": "demo__echo", "constraints": [{"kind": "max_length", "argument": "text", "max": 3}, {"kind": "one_of", "argument": "mode", "values": ["a", "b"]}]}]
	ok := gateway.decision with input as _call(["agent"], "demo__echo", {"text": "abc", "mode": "a"}) with data.gateway_data.grants as grants
	ok.allow
	long := gateway.decision with input as _call(["agent"], "demo__echo", {"text": "abcd", "mode": "a"}) with data.gateway_data.grants as grants
	not long.allow
	bad := gateway.decision with input as _call(["agent"], "demo__echo", {"text": "a", "mode": "c"}) with data.gateway_data.grants as grants
	not bad.allow
}
