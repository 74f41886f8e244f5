# plan/submit: an executor plan (architecture.md §8) as a whole, before it is accepted.
#
# input.resource: {"plan": {"steps": [...]}, "tools": {"<tool>": <tool resource>}}
# "tools" holds the catalog entry (the same object tools/call sees as resource: tool,
# server, risk, …) of every tool the plan names, built by the gateway; a tool missing
# from it is not in the catalog.
#
# A step names a tool when it has a "tool" key (kind "tool"), and its compensation
# when it has "compensate": {"tool": …}; approval gates and timers name none.
# Arguments are not checked here: they may refer to inputs and earlier outputs. Every
# step is decided again as a tools/call when it runs, with the executor appended to
# the delegation chain; that decision checks constraints.
#
# Order: delegation chain → malformed plan → an ad hoc plan from a subject who may run
# published workflows only (ad_hoc_plan_roles, workflows.rego) → too many steps
# (max_plan_steps) → a step whose tool the subject may not call → a review of the
# whole plan (plan_review, workflows.rego) → allowed once approved, when a step's tool
# needs approval → allowed.
package gateway

import rego.v1

plan_steps := input.resource.plan.steps

plan_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _deny({"plan/submit needs resource.plan.steps (a list)"}, "plan_malformed") if {
	not _plan_well_formed
} else := _deny({plan_ad_hoc_refusal}, "plan_ad_hoc_denied") if {
	plan_ad_hoc_refused
} else := _deny({_plan_too_long}, "plan_too_long") if {
	count(plan_steps) > max_plan_steps
} else := _deny(plan_step_violations, "plan_step_denied") if {
	count(plan_step_violations) > 0
} else := _plan_review_decision if {
	count(plan_review_reasons) > 0
} else := _approval("plan", plan_gates, "plan_approval") if {
	count(plan_gates) > 0
} else := _allow("plan")

_plan_well_formed if is_array(plan_steps)

_plan_too_long := concat("", [
	"plan has ", format_int(count(plan_steps), 10), " steps; at most ",
	text(max_plan_steps), " allowed",
])

# Every tool a plan may call, as [label, tool]: each step's "tool" and the "tool" of
# its "compensate" (the call that undoes it when the run fails).
plan_tool_steps contains [_step_label(i, step), step.tool] if {
	some i, step in plan_steps
	is_object(step)
	"tool" in object.keys(step)
}

plan_tool_steps contains [concat("", [_step_label(i, step), " (compensate)"]), step.compensate.tool] if {
	some i, step in plan_steps
	is_object(step)
	is_object(step.compensate)
	"tool" in object.keys(step.compensate)
}

# The catalog entry of each tool the plan names, and its grants within risk, once per
# tool however many steps name it: this is the costly part of deciding a step, and
# function calls are not memoized (a 40-step plan took ≈ 45 ms on rego-cpp, the former
# embedded engine).
# The entry's "tool" is forced to the name looked up, so a mislabelled entry cannot
# lend its grants to another tool.
_plan_tool_resources := {tool: resource |
	some [_, tool] in plan_tool_steps
	is_string(tool)
	resource := _step_resource(object.get(input.resource, ["tools", tool], null), tool)
	is_object(resource)
}

_plan_tool_grants := {tool: grants_within_risk(resource) |
	some tool
	resource := _plan_tool_resources[tool]
}

_step_resource(entry, tool) := object.union(entry, {"tool": tool}) if {
	is_object(entry)
} else := null

plan_step_violations contains msg if {
	some i, step in plan_steps
	not is_object(step)
	msg := concat("", ["step #", format_int(i, 10), ": a step must be an object"])
}

plan_step_violations contains msg if {
	some [label, tool] in plan_tool_steps
	not is_string(tool)
	msg := concat("", [label, ": the tool must be a name"])
}

plan_step_violations contains msg if {
	some [label, tool] in plan_tool_steps
	is_string(tool)
	not _plan_tool_resources[tool]
	msg := concat("", [label, ": ", tool, " is not in the tool catalog"])
}

plan_step_violations contains msg if {
	some [label, tool] in plan_tool_steps
	count(_plan_tool_grants[tool]) == 0
	msg := concat("", [label, ": ", _step_refusal(_plan_tool_resources[tool])])
}

_step_refusal(resource) := risk_violation(resource) if {
	count(grants_for_tool(resource)) > 0
} else := no_grant_reason(resource.tool)

# Every approval any tool step waits for; the executor asks again for each step.
plan_gates := {gate |
	some tool
	resource := _plan_tool_resources[tool]
	some gate in approval_gates(_plan_tool_grants[tool], resource)
}

_step_label(i, step) := concat("", ["step ", step.id]) if {
	is_string(step.id)
} else := concat("", ["step #", format_int(i, 10)])
