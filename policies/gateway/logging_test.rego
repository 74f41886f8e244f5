package gateway_test

import rego.v1

import data.gateway

set_level(level, chain) := {
	"version": 1,
	"subject": object.union(subject(["agent"]), {"act_chain": chain}),
	"action": "logging/setLevel",
	"resource": {"kind": "log_level", "server": null},
	"arguments": {"level": level},
	"context": {},
}

test_any_level_by_default if {
	every level in gateway.log_levels {
		d := gateway.decision with input as set_level(level, [])
		d.allow
		d.rule == "log_level"
	}
}

test_a_level_below_the_floor_is_denied if {
	d := gateway.decision with input as set_level("debug", [])
		with data.gateway_data.min_log_level as "warning"
	not d.allow
	d.rule == "log_level_too_low"
	d.reasons == ["log level debug is not allowed: the lowest a session may ask for is warning"]
	allowed := gateway.decision with input as set_level("error", [])
		with data.gateway_data.min_log_level as "warning"
	allowed.allow
	at_floor := gateway.decision with input as set_level("warning", [])
		with data.gateway_data.min_log_level as "warning"
	at_floor.allow
}

test_an_unknown_level_is_denied if {
	d := gateway.decision with input as set_level("verbose", [])
	not d.allow
	d.rule == "log_level_too_low"
}

test_a_broken_chain_is_denied if {
	d := gateway.decision with input as set_level("info", [{"sub": "agent:blocked"}])
		with data.gateway_data.blocked_actors as ["agent:blocked"]
	not d.allow
	d.rule == "delegation_chain"
}
