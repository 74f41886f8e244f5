package gateway_test

import rego.v1

import data.gateway

test_risk_rank if {
	gateway.risk_rank("low") == 0
	gateway.risk_rank("high") == 2
	gateway.risk_rank("critical") == 3
	gateway.risk_rank(null) == 3
}

test_threshold_rank if {
	gateway.threshold_rank("medium") == 1
	gateway.threshold_rank("Medium") == -1
}

test_custom_tiers if {
	tiers := ["low", "medium", "high", "critical"]
	r := gateway.risk_rank("critical") with data.gateway_data.risk_tiers as tiers
	r == 3
	unknown := gateway.risk_rank("extreme") with data.gateway_data.risk_tiers as tiers
	unknown == 4
}

test_unknown_tool_tier_fails_closed if {
	# A tier the data does not know ranks highest: approval, and above role limits.
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "weird")
	d.rule == "approval_risk"
	limited := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "weird")
		with data.gateway_data.role_max_risk as {"agent": "high"}
	limited.rule == "risk_tier"
}

test_misspelt_threshold_fails_closed if {
	d := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data.approval_for_risk as {"min_risk": "Hihg", "approvers": ["role:approver"]}
	d.rule == "approval_risk"
	limited := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data.role_max_risk as {"agent": "Lwo"}
	limited.rule == "risk_tier"
}

test_tier_approval_defaults if {
	# No ttl_s: approval_ttl_s; no min_risk: every tier.
	# (`with` merges objects into data, so replace all of gateway_data.)
	d := gateway.decision with input as call(["agent"], "demo__echo", {})
		with data.gateway_data as {
			"grants": [{"role": "agent", "tool": "demo__echo"}],
			"approval_for_risk": {"approvers": ["role:x"]},
			"approval_ttl_s": 60,
		}
	d.obligations == {"redact": [], "approvers": ["role:x"], "approval_ttl_s": 60}
}

test_grant_max_risk if {
	grants := [{"role": "agent", "tool": "demo__echo", "max_risk": "medium"}]
	ok := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "medium") with data.gateway_data.grants as grants
	ok.allow
	high := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "high") with data.gateway_data.grants as grants
	high.rule == "risk_tier"
}

test_grant_and_role_limits_both_apply if {
	grants := [{"role": "agent", "tool": "demo__echo", "max_risk": "high"}]
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {}, "medium")
		with data.gateway_data.grants as grants
		with data.gateway_data.role_max_risk as {"agent": "low"}
	d.rule == "risk_tier"
}

test_role_limit_applies_per_grant if {
	# The ops grant admits a high tool although agent's does not.
	grants := [{"role": "agent", "tool": "demo__echo"}, {"role": "ops", "tool": "demo__echo"}]
	d := gateway.decision with input as call_at(["agent", "ops"], "demo__echo", {}, "high")
		with data.gateway_data.grants as grants
		with data.gateway_data.role_max_risk as {"agent": "low"}
		with data.gateway_data.approval_for_risk as null
	d.rule == "grant"
}

test_risk_excluded_grant_does_not_report_constraints if {
	grants := [{"role": "agent", "tool": "demo__echo", "max_risk": "low", "constraints": [{"kind": "one_of", "argument": "a", "values": [1]}]}]
	d := gateway.decision with input as call_at(["agent"], "demo__echo", {"a": 2}, "high") with data.gateway_data.grants as grants
	d.rule == "risk_tier"
}
