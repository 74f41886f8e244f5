# Limits (docs/policies.md, "Limits"; docs/decisions/0031): at most N calls per window
# and at most M at once, counted per principal, tool, upstream or tenant. Policy says
# which limits a call is under, as the "limits" obligation of a decision that allows
# it; the gateway counts them in the database every replica shares, and answers a
# call over a limit 429 (MCP: a JSON-RPC error) without forwarding it.
#
# Each entry of data.gateway_data.limits:
#   {"name": "agent-calls",          # the counter's name (unique in the list)
#    "per": ["principal", "tool"],   # what it counts by: principal, tool, upstream,
#                                    #   tenant (default []: one counter for every call)
#    "calls": 600, "window_s": 60,   # at most 600 calls per fixed 60 s window, and/or
#    "concurrent": 4,                # at most 4 at once
#    # which calls it applies to; every filter given must match (default: all):
#    "actions": ["tools/call"],      # of tools/call, resources/read, prompts/get,
#                                    #   completion/complete (default ["tools/call"])
#    "tools": ["github__*"],         # gateway names of what is called (a tool, a prompt,
#                                    #   a resource URI), "<upstream>__*" or "*"
#    "upstreams": ["github"],
#    "roles": ["agent"],             # the subject has one of them
#    "tenant": "acme"}
#
# A "per" the gateway does not know makes the decision malformed (a null scope value),
# so it fails closed instead of counting coarser than the author meant.
package gateway

import rego.v1

# What the gateway forwards: the actions a limit may apply to.
limited_actions := {"tools/call", "resources/read", "prompts/get", "completion/complete"}

# This call's limits, in data's order.
call_limits := [_limit_obligation(limit) |
	input.action in limited_actions
	some limit in limits
	_limit_applies(limit)
]

_limit_applies(limit) if {
	input.action in object.get(limit, "actions", ["tools/call"])
	_limit_tools_match(object.get(limit, "tools", ["*"]))
	_limit_upstreams_match(object.get(limit, "upstreams", null))
	_limit_roles_match(object.get(limit, "roles", null))
	object.get(limit, "tenant", subject_tenant) == subject_tenant
}

_limit_tools_match(patterns) if {
	some pattern in patterns
	_limit_target_matches(pattern)
}

_limit_target_matches("*")

_limit_target_matches(pattern) if pattern == limit_target

_limit_target_matches(pattern) if {
	endswith(pattern, "__*")
	object.get(input.resource, "server", null) == trim_suffix(pattern, "__*")
}

_limit_upstreams_match(null)

_limit_upstreams_match(upstreams) if object.get(input.resource, "server", null) in upstreams

_limit_roles_match(null)

_limit_roles_match(roles) if {
	some role in roles
	role in input.subject.roles
}

# The gateway name of what is called: a tool, a prompt, a resource's URI.
limit_target := object.get(input.resource, "tool", object.get(input.resource, "prompt", object.get(input.resource, "uri", "")))

# The obligation: name, scope and the numbers the entry has (object.union and
# object.filter would say it shorter, but OPA's WebAssembly leaves them to the host).
_limit_obligation(limit) := {
	"name": _limit_name(limit), "scope": _limit_scope(limit),
	"calls": limit.calls, "window_s": limit.window_s, "concurrent": limit.concurrent,
} if {
	_has_window(limit)
	_has_concurrent(limit)
} else := {"name": _limit_name(limit), "scope": _limit_scope(limit), "calls": limit.calls, "window_s": limit.window_s} if {
	_has_window(limit)
} else := {"name": _limit_name(limit), "scope": _limit_scope(limit), "concurrent": limit.concurrent} if {
	_has_concurrent(limit)
} else := {"name": _limit_name(limit), "scope": _limit_scope(limit)}

# Present at all: a wrong type or value is the gateway's to refuse, loudly.
_has_window(limit) if {
	"calls" in object.keys(limit)
	"window_s" in object.keys(limit)
}

_has_concurrent(limit) if "concurrent" in object.keys(limit)

_limit_scope(limit) := {part: _limit_scope_value(part) | some part in object.get(limit, "per", [])}

# One person, however their subject is spelt (identity.rego).
_limit_scope_value(part) := concat(" ", [text(input.subject.iss), canonical_subject(input.subject.sub)]) if {
	part == "principal"
} else := limit_target if {
	part == "tool"
} else := text(object.get(input.resource, "server", null)) if {
	part == "upstream"
} else := text(subject_tenant) if {
	part == "tenant"
} else := null

# A limit without a name is not dropped: null, which the gateway refuses (fail closed).
_limit_name(limit) := object.get(limit, "name", null)
