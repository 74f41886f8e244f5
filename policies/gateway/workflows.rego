# Published workflows (docs/workflows.md, "Versioned workflows").
#
# plan/submit: input.resource.workflow is the published workflow a plan comes from
# ({"name", "version", "id", "hash", "channel"}), or null for an ad hoc plan. Two
# settings use it (plans.rego asks):
#   ad_hoc_plan_roles: null (anyone may submit ad hoc plans) or the roles that may;
#     the others may run published workflows only.
#   plan_review: null, or {"ad_hoc_min_risk": tier, "approvers": [...], "ttl_s": n}:
#     an ad hoc plan naming a tool at or above that tier waits for one human review
#     of the whole plan before any step (obligation plan_review: true); each step is
#     still decided when it runs.
#
# workflow/publish: input.resource.workflow {"name", "version", "hash", "tools"}.
#   Allowed to holders of workflow_publisher_roles.
# workflow/promote: input.resource {"workflow": {"name", "version", "hash"},
#   "channel": "prod", "current": {"version", "hash"} | null}. Allowed to holders of
#   the channel's promoter_roles (workflow_channels[channel], default the publisher
#   roles); allowed once approved when the channel names approvers.
package gateway

import rego.v1

# --- plan/submit ---------------------------------------------------------------------

_plan_workflow := object.get(input.resource, "workflow", null)

plan_is_ad_hoc if not is_object(_plan_workflow)

plan_ad_hoc_refused if {
	plan_is_ad_hoc
	ad_hoc_plan_roles != null
	count({role | some role in input.subject.roles; role in ad_hoc_plan_roles}) == 0
}

plan_ad_hoc_refusal := concat("", [
	"roles ", roles_text, " may run published workflows only, not ad hoc plans",
])

# Why an ad hoc plan needs a review: each of its tools at or above the tier.
plan_review_reasons contains reason if {
	plan_is_ad_hoc
	is_object(plan_review)
	min_risk := object.get(plan_review, "ad_hoc_min_risk", null)
	some tool
	resource := _plan_tool_resources[tool]
	risk_rank(resource.risk) >= threshold_rank(min_risk)
	reason := concat("", ["ad hoc plan calls ", tool, " (risk ", text(resource.risk), ")"])
}

_plan_review_decision := {
	"allow": true,
	"require_approval": true,
	"reasons": [concat("", [
		concat("; ", sort(plan_review_reasons)),
		": the whole plan needs review by ", concat(", ", approvers),
	])],
	"obligations": {
		"redact": redactions,
		"approvers": approvers,
		"approval_ttl_s": object.get(plan_review, "ttl_s", approval_ttl_s),
		"plan_review": true,
	},
	"rule": "plan_review",
} if {
	approvers := sort(object.get(plan_review, "approvers", ["role:approver"]))
}

# --- workflow/publish and workflow/promote -------------------------------------------

_holds_any(roles) if {
	some role in input.subject.roles
	role in roles
}

workflow_publish_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("workflow_publish") if {
	_holds_any(workflow_publisher_roles)
} else := _deny(
	{concat("", ["roles ", roles_text, " may not publish workflows"])},
	"workflow_publish_denied",
)

_promote_channel := object.get(workflow_channels, [text(input.resource.channel)], {})

_promoter_roles := object.get(_promote_channel, "promoter_roles", workflow_publisher_roles)

_promote_approvers := object.get(_promote_channel, "approvers", [])

_promote_what := concat("", [
	"promoting ", text(input.resource.workflow.name), "@", text(input.resource.workflow.version),
	" to ", text(input.resource.channel),
])

workflow_promote_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _deny(
	{concat("", ["roles ", roles_text, " may not promote to ", text(input.resource.channel)])},
	"workflow_promote_denied",
) if {
	not _holds_any(_promoter_roles)
} else := _approval(_promote_what, {gate}, "workflow_promote_approval") if {
	count(_promote_approvers) > 0
	gate := {
		"source": "channel",
		"approvers": _promote_approvers,
		"ttl_s": object.get(_promote_channel, "ttl_s", approval_ttl_s),
	}
} else := _allow("workflow_promote")
