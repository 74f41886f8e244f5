package gateway_test

import rego.v1

import data.gateway

_echo := call(["agent"], "demo__echo", {"text": "x"})

test_chain_length_limit if {
	four := gateway.decision with input as with_chain(_echo, ["a", "b", "c", "d"])
	four.allow
	five := gateway.decision with input as with_chain(_echo, ["a", "b", "c", "d", "e"])
	five.reasons == ["delegation chain has 5 actors; at most 4 allowed"]
	zero := gateway.decision with input as with_chain(_echo, ["a"]) with data.gateway_data.max_chain_length as 0
	zero.rule == "delegation_chain"
}

test_missing_chain_is_empty if {
	d := gateway.decision with input as object.remove(_echo, ["subject"])
		with input.subject as {"sub": "agent:test", "roles": ["agent"]}
	d.allow
}

test_blocked_actor_denied if {
	d := gateway.decision with input as with_chain(_echo, ["user:alice", "agent:rogue"])
		with data.gateway_data.blocked_actors as ["agent:rogue"]
	d.rule == "delegation_chain"
	d.reasons == ["actor agent:rogue may not appear in a delegation chain"]
}

test_blocked_actor_pattern if {
	blocked := ["agent:untrusted-*"]
	d := gateway.decision with input as with_chain(_echo, ["agent:untrusted-7"]) with data.gateway_data.blocked_actors as blocked
	d.rule == "delegation_chain"
	ok := gateway.decision with input as with_chain(_echo, ["agent:trusted"]) with data.gateway_data.blocked_actors as blocked
	ok.allow
}

test_blocked_actor_as_subject_is_not_a_chain_violation if {
	# blocked_actors is about delegation; take a subject's roles away to stop it.
	d := gateway.decision with input as as_subject(_echo, {"sub": "agent:rogue"})
		with data.gateway_data.blocked_actors as ["agent:rogue"]
	d.allow
}

test_every_violation_is_reported if {
	d := gateway.decision with input as with_chain(_echo, ["x", "x", "x", "x", "x"])
		with data.gateway_data.blocked_actors as ["x"]
	d.reasons == ["actor x may not appear in a delegation chain", "delegation chain has 5 actors; at most 4 allowed"]
}

test_required_origin if {
	origin := ["user:*"]
	from_user := gateway.decision with input as with_chain(_echo, ["agent:planner", "user:alice"]) with data.gateway_data.required_origin as origin
	from_user.allow
	from_agent := gateway.decision with input as with_chain(_echo, ["user:alice", "agent:cron"]) with data.gateway_data.required_origin as origin
	from_agent.rule == "delegation_chain"
	from_agent.reasons == ["delegation origin agent:cron is not one of user:*"]
}

test_required_origin_without_chain_is_the_subject if {
	origin := ["user:*", "service:billing"]
	agent := gateway.decision with input as _echo with data.gateway_data.required_origin as origin
	agent.reasons == ["delegation origin agent:test is not one of user:*, service:billing"]
	service := gateway.decision with input as as_subject(_echo, {"sub": "service:billing"}) with data.gateway_data.required_origin as origin
	service.allow
}

test_no_required_origin_by_default if {
	d := gateway.decision with input as with_chain(_echo, ["agent:cron"])
	d.allow
}

test_blocked_actor_under_another_spelling if {
	every actor in ["AGENT:rogue", "Agent:rogue"] {
		d := gateway.decision with input as with_chain(_echo, [actor])
			with data.gateway_data.blocked_actors as ["agent:rogue"]
		d.rule == "delegation_chain"
	}
	pattern := gateway.decision with input as with_chain(_echo, ["AGENT:untrusted-7"])
		with data.gateway_data.blocked_actors as ["Agent:untrusted-*"]
	pattern.rule == "delegation_chain"
}

test_required_origin_under_another_spelling if {
	d := gateway.decision with input as with_chain(_echo, ["agent:planner", "USER:alice"])
		with data.gateway_data.required_origin as ["user:*"]
	d.allow
	bare := gateway.decision with input as with_chain(_echo, ["agent:planner", "alice"])
		with data.gateway_data.required_origin as ["user:*"]
	bare.allow
}
