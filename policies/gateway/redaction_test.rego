package gateway_test

import rego.v1

import data.gateway

_redacted(arguments) := d.obligations.redact if {
	d := gateway.decision with input as call(["agent"], "demo__echo", arguments)
}

test_top_level_secret_names if {
	every name in ["api_key", "API_KEY", "Password", "token", "authorization", "SECRET"] {
		_redacted({"text": "hi", name: "s"}) == [concat("/", ["", "arguments", name])]
	}
}

test_ordinary_names_kept if {
	_redacted({"text": "hi", "tokens": 3, "api_key_id": "k", "my_password": "x"}) == []
}

test_nested_secrets if {
	arguments := {
		"headers": {"Authorization": "Bearer x", "Accept": "*/*"},
		"items": [{"token": "a"}, {"name": "b"}, [{"password": "c"}]],
	}
	_redacted(arguments) == [
		"/arguments/headers/Authorization",
		"/arguments/items/0/token",
		"/arguments/items/2/0/password",
	]
}

test_secret_object_redacted_once if {
	_redacted({"secret": {"token": "a", "inner": {"password": "b"}}}) == ["/arguments/secret"]
}

test_pointer_escaping if {
	_redacted({"a/b": {"token": 1}, "c~d": {"token": 2}}) == ["/arguments/a~1b/token", "/arguments/c~0d/token"]
}

test_secret_names_from_data_any_case if {
	r := _redacted({"X-Api-Key": "k", "token": "t"}) with data.gateway_data.secret_argument_names as ["x-api-key"]
	r == ["/arguments/X-Api-Key"]
}

test_non_ascii_case_not_folded if {
	# "TO\u212aEN" (Kelvin sign) is not "token" to either engine.
	_redacted({"TO\u212aEN": "t"}) == []
}

test_plan_step_arguments_redacted if {
	plan := {"steps": [
		{"id": "s1", "kind": "tool", "tool": "demo__echo", "arguments": {"api_key": "k"}},
		{"id": "g1", "kind": "approval"},
		{"id": "s2", "kind": "tool", "tool": "demo__echo", "arguments": {"nested": {"password": "p"}}, "compensate": {"tool": "demo__echo", "arguments": {"token": "t"}}},
	]}
	d := gateway.decision with input as object.union(plan_input(["agent"], plan), {"arguments": {"secret": "plan input"}})
	d.obligations.redact == [
		"/arguments/secret",
		"/resource/plan/steps/0/arguments/api_key",
		"/resource/plan/steps/2/arguments/nested/password",
		"/resource/plan/steps/2/compensate/arguments/token",
	]
}

test_plan_step_secrets_found_whatever_their_case if {
	plan := {"steps": [
		{"id": "s1", "kind": "tool", "tool": "demo__echo", "arguments": {"API_Key": "k", "note": "n"}},
		{"id": "s2", "kind": "tool", "tool": "demo__echo", "arguments": {"text": "no secret here"}},
	]}
	d := gateway.decision with input as plan_input(["agent"], plan)
	d.obligations.redact == ["/resource/plan/steps/0/arguments/API_Key"]
}

test_plan_steps_all_walked_when_a_secret_name_is_escaped_in_json if {
	# The quote is written \" in JSON text, so searching the text could miss the key.
	plan := {"steps": [{"id": "s1", "kind": "tool", "tool": "demo__echo", "arguments": {"we\"ird": "k"}}]}
	d := gateway.decision with input as plan_input(["agent"], plan)
		with data.gateway_data.secret_argument_names as ["we\"ird"]
	d.obligations.redact == ["/resource/plan/steps/0/arguments/we\"ird"]
}

test_plan_paths_only_for_plans if {
	inp := object.union(call(["agent"], "demo__echo", {}), {"resource": {"plan": {"steps": [{"arguments": {"token": "t"}}]}}})
	d := gateway.decision with input as inp
	d.obligations.redact == []
}
