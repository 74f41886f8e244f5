package gateway_test

import rego.v1

import data.gateway

per_agent := {"name": "agent-calls", "per": ["principal"], "calls": 2, "window_s": 60}

github_writes := {"name": "github-writes", "per": ["upstream"], "tools": ["github__*"], "concurrent": 1}

test_no_limits_no_obligation if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {"text": "hi"})
	not "limits" in object.keys(d.obligations)
}

test_a_limit_per_principal if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {"text": "hi"})
		with data.gateway_data.limits as [per_agent]
	d.allow
	d.obligations.limits == [{"name": "agent-calls", "scope": {"principal": "dev agent:test"}, "calls": 2, "window_s": 60}]
}

test_principal_is_one_person_however_spelt if {
	spelt := as_subject(call(["agent"], "demo__echo", {}), {"sub": "AGENT:test"})
	d := gateway.decision with input as spelt with data.gateway_data.limits as [per_agent]
	d.obligations.limits[0].scope == {"principal": "dev agent:test"}
}

test_limits_ride_on_approvals_too if {
	d := gateway.decision with input as call_at(["agent"], "demo__delete_records", {"table": "t", "ids": [1]}, "high")
		with data.gateway_data.limits as [per_agent]
	d.require_approval
	d.obligations.limits[0].name == "agent-calls"
	d.obligations.approval_ttl_s == 3600
}

test_no_limits_on_a_denial if {
	d := gateway.decision with input as call([], "demo__echo", {}) with data.gateway_data.limits as [per_agent]
	not d.allow
	not "limits" in object.keys(d.obligations)
}

test_tool_and_upstream_filters if {
	github := object.union(call(["agent"], "github__create_issue", {}), {})
	d := gateway.decision with input as github
		with data.gateway_data.grants as [{"role": "agent", "tool": "github__*"}]
		with data.gateway_data.limits as [github_writes, per_agent]
	[l.name | some l in d.obligations.limits] == ["github-writes", "agent-calls"]
	d.obligations.limits[0] == {"name": "github-writes", "scope": {"upstream": "github"}, "concurrent": 1}

	e := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data.limits as [github_writes]
	not "limits" in object.keys(e.obligations)
}

test_upstreams_roles_tenant_and_actions_filter if {
	inp := call(["agent"], "demo__echo", {})
	every limit in [
		object.union(per_agent, {"upstreams": ["github"]}),
		object.union(per_agent, {"roles": ["admin"]}),
		object.union(per_agent, {"tenant": "acme"}),
		object.union(per_agent, {"actions": ["prompts/get"]}),
		object.union(per_agent, {"tools": ["demo__read_file"]}),
	] {
		d := gateway.decision with input as inp with data.gateway_data.limits as [limit]
		not "limits" in object.keys(d.obligations)
	}
	every limit in [
		object.union(per_agent, {"upstreams": ["demo"]}),
		object.union(per_agent, {"roles": ["admin", "agent"]}),
		object.union(per_agent, {"tools": ["demo__echo"]}),
		object.union(per_agent, {"tools": ["*"]}),
	] {
		d := gateway.decision with input as inp with data.gateway_data.limits as [limit]
		count(d.obligations.limits) == 1
	}
}

test_scope_per_tool_tenant_and_everyone if {
	inp := as_subject(call(["agent"], "demo__echo", {}), {"tenant": "acme"})
	d := gateway.decision with input as inp with data.gateway_data.limits as [
		{"name": "t", "per": ["tool", "tenant"], "calls": 5, "window_s": 1},
		{"name": "all", "concurrent": 10},
	]
	d.obligations.limits == [
		{"name": "t", "scope": {"tool": "demo__echo", "tenant": "acme"}, "calls": 5, "window_s": 1},
		{"name": "all", "scope": {}, "concurrent": 10},
	]
}

test_an_unknown_per_is_a_null_scope if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data.limits as [{"name": "x", "per": ["region"], "concurrent": 1}]
	d.obligations.limits[0].scope == {"region": null}
}

test_limits_on_prompts_and_reads if {
	prompt := {
		"version": 1, "subject": subject(["agent"]), "action": "prompts/get",
		"resource": {"kind": "prompt", "prompt": "demo__greet", "server": "demo"},
		"arguments": {}, "context": {},
	}
	limit := object.union(per_agent, {"per": ["tool"], "actions": ["prompts/get", "resources/read"]})
	d := gateway.decision with input as prompt
		with data.gateway_data.grants as [{"role": "agent", "prompt": "demo__*"}]
		with data.gateway_data.limits as [limit]
	d.obligations.limits[0].scope == {"tool": "demo__greet"}

	read := object.union(object.remove(prompt, ["resource"]), {"action": "resources/read", "resource": {"kind": "resource", "uri": "gateway:demo/x", "server": "demo"}})
	r := gateway.decision with input as read
		with data.gateway_data.grants as [{"role": "agent", "resource": "gateway:demo/*"}]
		with data.gateway_data.limits as [limit]
	r.obligations.limits[0].scope == {"tool": "gateway:demo/x"}
}

test_upstream_scope_without_a_server if {
	inp := object.union(call(["agent"], "demo__echo", {}), {"resource": {"server": null}})
	v := gateway._limit_scope_value("upstream") with input as inp
	v == "null"
}

test_plans_and_lists_carry_no_limits if {
	d := gateway.decision with input as listing(["agent"], "demo__echo") with data.gateway_data.limits as [per_agent]
	d.allow
	not "limits" in object.keys(d.obligations)
}

test_a_limit_without_a_name_or_window_is_kept_for_the_gateway_to_refuse if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data.limits as [{"concurrent": 1}, {"name": "half", "calls": 5}]
	d.obligations.limits == [{"name": null, "scope": {}, "concurrent": 1}, {"name": "half", "scope": {}}]
}
