package gateway_test

import rego.v1

import data.gateway

published := {"name": "cleanup", "version": "1.0.0", "id": "wf_1", "hash": "sha256:1", "channel": null}

from_workflow(inp) := object.union(inp, {"resource": {"workflow": published}})

delete_plan := {"steps": [tool_step("s1", "demo__delete_records")]}

echo_plan := {"steps": [tool_step("s1", "demo__echo")]}

# --- ad hoc plans ----------------------------------------------------------------------

test_ad_hoc_plans_allowed_to_anyone_by_default if {
	d := gateway.decision with input as plan_input(["agent"], echo_plan)
	d.rule == "plan"
}

test_ad_hoc_plans_only_for_some_roles if {
	d := gateway.decision with input as plan_input(["agent"], echo_plan)
		with data.gateway_data.ad_hoc_plan_roles as ["planner"]
	d == {
		"allow": false,
		"require_approval": false,
		"reasons": ["roles agent may run published workflows only, not ad hoc plans"],
		"obligations": {"redact": [], "approvers": []},
		"rule": "plan_ad_hoc_denied",
	}
	ok := gateway.decision with input as plan_input(["agent", "planner"], echo_plan)
		with data.gateway_data.ad_hoc_plan_roles as ["planner"]
	ok.rule == "plan"
}

test_published_workflow_runs_without_ad_hoc_role if {
	d := gateway.decision with input as from_workflow(plan_input(["agent"], echo_plan))
		with data.gateway_data.ad_hoc_plan_roles as []
	d.rule == "plan"
}

test_published_workflow_still_needs_grants if {
	plan := {"steps": [tool_step("s1", "demo__scan")]}
	d := gateway.decision with input as from_workflow(plan_input(["agent"], plan))
		with data.gateway_data.ad_hoc_plan_roles as []
	d.rule == "plan_step_denied"
}

# --- plan review ------------------------------------------------------------------------

review := {"ad_hoc_min_risk": "high", "approvers": ["role:approver"], "ttl_s": 600}

test_ad_hoc_destructive_plan_needs_review if {
	d := gateway.decision with input as plan_input(["agent"], delete_plan)
		with data.gateway_data.plan_review as review
	d == {
		"allow": true,
		"require_approval": true,
		"reasons": ["ad hoc plan calls demo__delete_records (risk high): the whole plan needs review by role:approver"],
		"obligations": {"redact": [], "approvers": ["role:approver"], "approval_ttl_s": 600, "plan_review": true},
		"rule": "plan_review",
	}
}

test_low_risk_ad_hoc_plan_needs_no_review if {
	d := gateway.decision with input as plan_input(["agent"], echo_plan)
		with data.gateway_data.plan_review as review
	d.rule == "plan"
}

test_published_destructive_workflow_needs_no_plan_review if {
	# Its steps still wait for their own approvals.
	d := gateway.decision with input as from_workflow(plan_input(["agent"], delete_plan))
		with data.gateway_data.plan_review as review
	d.rule == "plan_approval"
	not d.obligations.plan_review
}

test_review_never_rescues_a_denied_step if {
	plan := {"steps": [tool_step("s1", "demo__delete_records"), tool_step("s2", "demo__scan")]}
	d := gateway.decision with input as plan_input(["agent"], plan)
		with data.gateway_data.plan_review as review
	d.rule == "plan_step_denied"
}

# --- publish and promote -----------------------------------------------------------------

publish_input(roles) := {
	"version": 1,
	"subject": subject(roles),
	"action": "workflow/publish",
	"resource": {"workflow": {"name": "cleanup", "version": "1.0.0", "hash": "sha256:1", "tools": {}}},
	"arguments": {},
	"context": {},
}

promote_input(roles, channel) := {
	"version": 1,
	"subject": subject(roles),
	"action": "workflow/promote",
	"resource": {
		"workflow": {"name": "cleanup", "version": "1.1.0", "hash": "sha256:2"},
		"channel": channel,
		"current": {"version": "1.0.0", "hash": "sha256:1"},
	},
	"arguments": {},
	"context": {},
}

channels := {"prod": {"promoter_roles": ["release"], "approvers": ["role:approver"], "ttl_s": 900}}

test_publish_needs_a_publisher_role if {
	d := gateway.decision with input as publish_input(["agent"])
	d.rule == "workflow_publish_denied"
	d.reasons == ["roles agent may not publish workflows"]
	ok := gateway.decision with input as publish_input(["workflow_author"])
	ok.rule == "workflow_publish"
}

test_promote_to_an_unconfigured_channel_is_for_publishers if {
	d := gateway.decision with input as promote_input(["workflow_author"], "staging")
		with data.gateway_data.workflow_channels as channels
	d.rule == "workflow_promote"
	not d.require_approval
	no := gateway.decision with input as promote_input(["agent"], "staging")
		with data.gateway_data.workflow_channels as channels
	no.rule == "workflow_promote_denied"
}

test_promote_to_prod_needs_approval if {
	d := gateway.decision with input as promote_input(["release"], "prod")
		with data.gateway_data.workflow_channels as channels
	d == {
		"allow": true,
		"require_approval": true,
		"reasons": ["promoting cleanup@1.1.0 to prod needs approval by role:approver"],
		"obligations": {"redact": [], "approvers": ["role:approver"], "approval_ttl_s": 900},
		"rule": "workflow_promote_approval",
	}
}

test_promote_to_prod_refused_to_other_roles if {
	d := gateway.decision with input as promote_input(["workflow_author"], "prod")
		with data.gateway_data.workflow_channels as channels
	d.rule == "workflow_promote_denied"
	d.reasons == ["roles workflow_author may not promote to prod"]
}

test_workflow_actions_check_the_chain if {
	d := gateway.decision with input as with_chain(publish_input(["workflow_author"]), ["a", "b", "c", "d", "e"])
	d.rule == "delegation_chain"
}
