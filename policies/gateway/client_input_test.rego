package gateway_test

import rego.v1

import data.gateway

input_grants := [
	{"role": "agent", "client_input": "*"},
	{"role": "ops", "client_input": "roots/list", "upstream": "files"},
	{"role": "acme", "client_input": "*", "tenant": "acme"},
]

client_input(action, roles, upstream, extra) := {
	"version": 1,
	"subject": subject(roles),
	"action": action,
	"resource": object.union(
		{"upstream": upstream, "server": upstream, "for_method": "tools/call", "for_target": "x__y"},
		extra,
	),
	"arguments": {},
	"context": {},
}

decide_client_input(inp) := d if {
	d := gateway.decision with input as inp
		with data.gateway_data.grants as input_grants
		with data.gateway_data.url_elicitation_hosts as ["auth.example.com", "*.corp.example"]
}

test_an_agent_may_be_asked_every_kind if {
	every action in ["elicitation/create", "sampling/createMessage", "roots/list"] {
		d := decide_client_input(client_input(action, ["agent"], "demo", {"mode": "form"}))
		d.allow
		not d.require_approval
		d.rule == "client_input_grant"
	}
}

test_a_grant_for_one_kind_and_upstream_covers_only_that if {
	decide_client_input(client_input("roots/list", ["ops"], "files", {})).allow
	d := decide_client_input(client_input("sampling/createMessage", ["ops"], "files", {}))
	not d.allow
	d.rule == "no_client_input_grant"
	d.reasons == ["no grant lets roles ops be asked sampling/createMessage by upstream files"]
	not decide_client_input(client_input("roots/list", ["ops"], "other", {})).allow
}

test_no_role_no_relay if {
	d := decide_client_input(client_input("elicitation/create", [], "demo", {"mode": "form"}))
	not d.allow
	d.reasons == ["no grant lets roles (none) be asked elicitation/create by upstream demo"]
}

test_a_tenant_grant_needs_that_tenant if {
	not decide_client_input(client_input("roots/list", ["acme"], "demo", {})).allow
	inp := json.patch(client_input("roots/list", ["acme"], "demo", {}), [{"op": "add", "path": "/subject/tenant", "value": "acme"}])
	decide_client_input(inp).allow
}

test_url_elicitation_only_to_listed_hosts if {
	url := {"mode": "url", "url": "https://auth.example.com/x", "url_host": "auth.example.com"}
	decide_client_input(client_input("elicitation/create", ["agent"], "demo", url)).allow
	sub := {"mode": "url", "url": "https://sso.corp.example/x", "url_host": "sso.corp.example"}
	decide_client_input(client_input("elicitation/create", ["agent"], "demo", sub)).allow
	evil := {"mode": "url", "url": "https://evil.example/x", "url_host": "evil.example"}
	d := decide_client_input(client_input("elicitation/create", ["agent"], "demo", evil))
	not d.allow
	d.rule == "url_elicitation_host"
	d.reasons == ["URL elicitation to evil.example is not allowed: the host is not in url_elicitation_hosts"]
}

test_a_url_without_a_host_is_denied if {
	d := decide_client_input(client_input("elicitation/create", ["agent"], "demo", {"mode": "url", "url": "mailto:x", "url_host": null}))
	not d.allow
	d.rule == "url_elicitation_host"
}

test_a_suffix_pattern_is_not_the_bare_domain_nor_a_lookalike if {
	bare := {"mode": "url", "url_host": "corp.example"}
	not decide_client_input(client_input("elicitation/create", ["agent"], "demo", bare)).allow
	lookalike := {"mode": "url", "url_host": "evilcorp.example"}
	not decide_client_input(client_input("elicitation/create", ["agent"], "demo", lookalike)).allow
}

test_default_data_denies_url_elicitation_and_allows_the_agent if {
	form := client_input("elicitation/create", ["agent"], "demo", {"mode": "form"})
	gateway.decision.allow with input as form
	url := client_input("elicitation/create", ["agent"], "demo", {"mode": "url", "url_host": "example.com"})
	not gateway.decision.allow with input as url
	sampling := client_input("sampling/createMessage", ["agent"], "demo", {})
	gateway.decision.allow with input as sampling
}

test_a_broken_delegation_chain_is_denied_first if {
	inp := json.patch(client_input("roots/list", ["agent"], "demo", {}), [{"op": "add", "path": "/subject/act_chain", "value": [{"sub": "a"}, {"sub": "b"}, {"sub": "c"}, {"sub": "d"}, {"sub": "e"}]}])
	d := decide_client_input(inp)
	not d.allow
	d.rule == "delegation_chain"
}
