package gateway_test

import rego.v1

import data.gateway

test_approver_role_may_decide if {
	d := gateway.decision with input as decide_input(person("user:carol", ["approver"]))
	d == {
		"allow": true,
		"require_approval": false,
		"reasons": ["allowed by approver"],
		"obligations": {"redact": [], "approvers": []},
		"rule": "approver",
	}
}

test_named_user_may_decide if {
	full := gateway.decision with input as decide_input(person("user:bob", []))
	full.allow
	bare := gateway.decision with input as decide_input(person("bob", []))
	bare.allow
}

test_others_may_not_decide if {
	d := gateway.decision with input as decide_input(person("user:mallory", ["agent"]))
	d.rule == "not_an_approver"
	d.reasons == ["user:mallory is not one of the approvers role:approver, user:bob"]

	# "user:" entries name users only: a subject "bob:x" does not hold "user:bob".
	other := gateway.decision with input as decide_input(person("role:approver", []))
	other.rule == "not_an_approver"
}

test_requester_may_not_approve if {
	d := gateway.decision with input as decide_input(person("agent:triage", ["approver"]))
	d.rule == "self_approval"
	not d.allow
}

test_requester_chain_may_not_approve if {
	d := gateway.decision with input as decide_input(person("user:alice", ["approver"]))
	d.rule == "self_approval"
}

test_requester_acting_through_approver_may_not_approve if {
	approver := object.union(person("user:carol", ["approver"]), {"act_chain": [{"sub": "agent:triage"}]})
	d := gateway.decision with input as decide_input(approver)
	d.rule == "self_approval"
}

test_only_pending_approvals if {
	inp := object.union(decide_input(person("user:carol", ["approver"])), {"resource": {"approval": {"status": "approved"}}})
	d := gateway.decision with input as inp
	d.rule == "approval_not_pending"
	d.reasons == ["approval apr_1 is approved, not pending"]
}

test_malformed_approvals if {
	approver := person("user:carol", ["approver"])
	every approval in [
		null,
		object.remove(pending, ["status"]),
		object.remove(pending, ["approvers"]),
		object.union(pending, {"approvers": "role:approver"}),
		object.union(pending, {"approvers": ["role:approver", 1]}),
		object.union(pending, {"requester": {"sub": null}}),
		object.union(pending, {"requester": {"act_chain": "user:alice"}}),
		object.union(pending, {"requester": {"act_chain": null}}),
	] {
		inp := object.union(object.remove(decide_input(approver), ["resource"]), {"resource": {"approval": approval}})
		d := gateway.decision with input as inp
		d.rule == "approval_malformed"
	}
}

test_requester_without_chain if {
	approver := person("user:alice", ["approver"])
	requester := {"sub": "agent:x"}
	inp := object.union(object.remove(decide_input(approver), ["resource"]), {"resource": {"approval": object.union(object.remove(pending, ["requester"]), {"requester": requester})}})
	d := gateway.decision with input as inp
	d.rule == "approver"
}

test_approver_chain_rules if {
	approver := object.union(person("user:carol", ["approver"]), {"act_chain": [{"sub": "agent:rogue"}]})
	d := gateway.decision with input as decide_input(approver) with data.gateway_data.blocked_actors as ["agent:rogue"]
	d.rule == "delegation_chain"
}

test_delegated_approvers_can_be_refused if {
	# A deployment where approvals come from people only: required_origin "user:*".
	approver := object.union(person("agent:helper", ["approver"]), {"act_chain": [{"sub": "service:bot"}]})
	d := gateway.decision with input as decide_input(approver) with data.gateway_data.required_origin as ["user:*"]
	d.rule == "delegation_chain"
}

# One identity per person (identity.rego): every spelling of a party is that party.
test_spellings_of_a_party_may_not_approve if {
	every sub in ["alice", "USER:alice", "User:alice", "user:alice"] {
		d := gateway.decision with input as decide_input(person(sub, ["approver"]))
		d.rule == "self_approval"
	}
	every sub in ["AGENT:triage", "Agent:triage"] {
		d := gateway.decision with input as decide_input(person(sub, ["approver"]))
		d.rule == "self_approval"
	}
}

test_spellings_of_a_named_approver_hold_the_entry if {
	every sub in ["bob", "USER:bob"] {
		d := gateway.decision with input as decide_input(person(sub, []))
		d.allow
	}

	# The subject itself is compared exactly: "BOB" is someone else.
	other := gateway.decision with input as decide_input(person("BOB", []))
	other.rule == "not_an_approver"
}

test_an_actor_without_an_issuer_is_of_the_tokens_issuer if {
	# The requester's actor "user:alice" names no issuer: the requester's ("dev").
	same := gateway.decision with input as decide_input(person("user:alice", ["approver"]))
	same.rule == "self_approval"

	# Another issuer's alice is another person.
	elsewhere := object.union(person("user:alice", ["approver"]), {"iss": "other-idp"})
	d := gateway.decision with input as decide_input(elsewhere)
	d.allow
}

test_canonical_subject if {
	canonical_subject_cases := {
		"alice": "user:alice",
		"USER:alice": "user:alice",
		"Agent:Triage": "agent:Triage",
		"agent:x:y": "agent:x:y",
		"user:": "user:user:",
		"1x:y": "user:1x:y",
		"a@b.c": "user:a@b.c",
		"spiffe://d/w": "spiffe://d/w",
	}
	every given, want in canonical_subject_cases {
		gateway.canonical_subject(given) == want
	}
}
