package gateway_test

import rego.v1

import data.gateway

offering_grants := [
	{"role": "agent", "resource": "gateway:docs/file:///public/*"},
	{"role": "agent", "resource": "gateway:docs/mem://motd"},
	{"role": "agent", "prompt": "docs__review"},
	{"role": "ops", "prompt": "docs__*"},
	{"role": "ops", "resource": "gateway:docs/*", "tenant": "acme"},
]

resource_input(action, roles, uri) := {
	"version": 1,
	"subject": subject(roles),
	"action": action,
	"resource": {"kind": "resource", "uri": uri, "server": "docs", "upstream_uri": "x", "definition_hash": null, "labels": []},
	"arguments": {},
	"context": {},
}

prompt_input(action, roles, name, arguments) := {
	"version": 1,
	"subject": subject(roles),
	"action": action,
	"resource": {"prompt": name, "server": split(name, "__")[0], "upstream_prompt": "p", "definition_hash": "h", "labels": []},
	"arguments": arguments,
	"context": {},
}

decide(inp) := d if {
	d := gateway.decision with input as inp with data.gateway_data.grants as offering_grants
}

test_a_prefix_grant_covers_reads_and_listings_under_it if {
	every action in ["resources/read", "resources/list"] {
		d := decide(resource_input(action, ["agent"], "gateway:docs/file:///public/a.txt"))
		d.allow
		d.rule == "resource_grant"
	}
}

test_a_subscription_is_decided_like_a_read if {
	d := decide(resource_input("resources/subscribe", ["agent"], "gateway:docs/file:///public/a.txt"))
	d.allow
	d.rule == "resource_grant"
	denied := decide(resource_input("resources/subscribe", ["agent"], "gateway:docs/file:///private/a"))
	not denied.allow
	denied.rule == "no_resource_grant"
	not decide(resource_input("resources/subscribe", ["agent"], "gateway:docs/file:///public/../x")).allow
}

test_an_exact_grant_covers_only_that_uri if {
	decide(resource_input("resources/read", ["agent"], "gateway:docs/mem://motd")).allow
	d := decide(resource_input("resources/read", ["agent"], "gateway:docs/mem://motd2"))
	not d.allow
	d.rule == "no_resource_grant"
	d.reasons == ["no grant lets roles agent use resource gateway:docs/mem://motd2"]
}

test_a_read_outside_the_prefix_is_denied if {
	d := decide(resource_input("resources/read", ["agent"], "gateway:docs/file:///private/a"))
	not d.allow
	d.rule == "no_resource_grant"
	not decide(resource_input("resources/read", ["agent"], "gateway:other/file:///public/a")).allow
}

test_a_prefix_never_covers_dot_segments if {
	every uri in [
		"gateway:docs/file:///public/../secret",
		"gateway:docs/file:///public/%2E%2E/secret",
		"gateway:docs/file:///public/.%2e/secret",
		"gateway:docs/file:///public/./a",
	] {
		not decide(resource_input("resources/read", ["agent"], uri)).allow
	}
}

test_a_template_is_covered_by_its_prefix if {
	template := object.union(resource_input("resources/list", ["agent"], "gateway:docs/file:///public/{name}"), {"resource": {"kind": "resource_template"}})
	decide(template).allow
}

test_tenant_resource_grants_serve_only_their_tenant if {
	inp := resource_input("resources/read", ["ops"], "gateway:docs/file:///private/a")
	decide(as_subject(inp, {"tenant": "acme"})).allow
	not decide(as_subject(inp, {"tenant": "globex"})).allow
	not decide(inp).allow
}

test_a_uri_that_is_not_a_string_is_denied if {
	not decide(object.union(resource_input("resources/read", ["agent"], "x"), {"resource": {"uri": 7}})).allow
}

test_prompts_by_name_or_server_wildcard if {
	decide(prompt_input("prompts/get", ["agent"], "docs__review", {"code": "x"})).allow
	d := decide(prompt_input("prompts/get", ["agent"], "docs__other", {}))
	not d.allow
	d.rule == "no_prompt_grant"
	d.reasons == ["no grant lets roles agent use prompt docs__other"]
	decide(prompt_input("prompts/list", ["ops"], "docs__other", {})).allow
	tricky := object.union(prompt_input("prompts/get", ["ops"], "docs__x", {}), {"resource": {"server": "evil"}})
	not decide(tricky).allow
}

test_prompt_arguments_with_secret_names_are_redacted if {
	d := decide(prompt_input("prompts/get", ["agent"], "docs__review", {"code": "x", "api_key": "k"}))
	d.allow
	d.obligations.redact == ["/arguments/api_key"]
}

test_completions_follow_what_the_caller_may_see if {
	prompt := object.union(prompt_input("completion/complete", ["agent"], "docs__review", {}), {"resource": {"ref": "ref/prompt"}})
	decide(prompt).allow
	hidden := object.union(prompt_input("completion/complete", ["agent"], "docs__other", {}), {"resource": {"ref": "ref/prompt"}})
	d := decide(hidden)
	not d.allow
	d.rule == "no_completion_grant"
	d.reasons == ["no grant lets roles agent see docs__other"]
	template := object.union(resource_input("completion/complete", ["agent"], "gateway:docs/file:///public/{name}"), {"resource": {"ref": "ref/resource"}})
	decide(template).allow
	elsewhere := object.union(resource_input("completion/complete", ["agent"], "gateway:docs/file:///private/{name}"), {"resource": {"ref": "ref/resource"}})
	not decide(elsewhere).allow
}

test_the_delegation_chain_applies_to_every_new_action if {
	blocked := {"max_chain_length": 1, "grants": offering_grants}
	every inp in [
		resource_input("resources/read", ["agent"], "gateway:docs/mem://motd"),
		prompt_input("prompts/list", ["agent"], "docs__review", {}),
		object.union(prompt_input("completion/complete", ["agent"], "docs__review", {}), {"resource": {"ref": "ref/prompt"}}),
	] {
		d := gateway.decision with input as with_chain(inp, ["agent:a", "agent:b"]) with data.gateway_data as blocked
		d.rule == "delegation_chain"
	}
}

test_a_tool_grant_does_not_cover_prompts_or_resources if {
	tool_grants := [{"role": "agent", "tool": "docs__*"}]
	not gateway.decision.allow with input as prompt_input("prompts/get", ["agent"], "docs__review", {}) with data.gateway_data.grants as tool_grants
	not gateway.decision.allow with input as resource_input("resources/read", ["agent"], "gateway:docs/x") with data.gateway_data.grants as tool_grants
}

test_the_shipped_grants_show_the_demo_upstream if {
	gateway.decision.allow with input as resource_input("resources/read", ["agent"], "gateway:demo/demo://readme")
	gateway.decision.allow with input as prompt_input("prompts/get", ["agent"], "demo__review", {"code": "x"})
}

test_a_prompt_without_a_server_string_matches_only_by_name if {
	exact := object.union(prompt_input("prompts/get", ["agent"], "docs__review", {}), {"resource": {"server": null}})
	decide(exact).allow
	wildcard := object.union(prompt_input("prompts/get", ["ops"], "docs__x", {}), {"resource": {"server": null}})
	not decide(wildcard).allow
}

list_input(action, roles, items) := {"version": 1, "action": action, "subject": subject(roles), "items": items}

visible_of(inp) := v if {
	v := gateway.visible with input as inp with data.gateway_data.grants as offering_grants
}

test_one_evaluation_lists_the_visible_prompts if {
	items := [prompt_input("x", [], "docs__review", {}).resource, prompt_input("x", [], "docs__other", {}).resource]
	visible_of(list_input("prompts/list", ["agent"], items)) == {"visible": ["docs__review"]}
	visible_of(list_input("prompts/list", ["ops"], items)) == {"visible": ["docs__review", "docs__other"]}
	visible_of(list_input("prompts/list", [], items)) == {"visible": []}
}

test_one_evaluation_lists_the_visible_resources_and_templates if {
	items := [
		resource_input("x", [], "gateway:docs/file:///public/a").resource,
		resource_input("x", [], "gateway:docs/file:///public/{name}").resource,
		resource_input("x", [], "gateway:docs/file:///private/b").resource,
	]
	visible_of(list_input("resources/list", ["agent"], items)) == {"visible": ["gateway:docs/file:///public/a", "gateway:docs/file:///public/{name}"]}
}

test_a_broken_chain_lists_nothing if {
	items := [prompt_input("x", [], "docs__review", {}).resource]
	inp := with_chain(list_input("prompts/list", ["agent"], items), ["agent:a", "agent:b", "agent:c", "agent:d", "agent:e"])
	visible_of(inp) == {"visible": []}
}
