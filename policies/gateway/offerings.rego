# Prompts, resources and completions (docs/policies.md, "Prompts and resources"): the
# actions resources/list, resources/read, resources/subscribe (decided like a read of
# the URI), prompts/list, prompts/get and completion/complete.
#
# Grants in data.gateway_data.grants beside the tool grants (grants.rego):
#   {"role": "agent", "resource": "gateway:demo/*"}       # a gateway URI, or a prefix ending in *
#   {"role": "agent", "prompt": "demo__review"}           # a gateway prompt name, or "<server>__*"
#   "tenant" as for tools: only for subjects of that tenant.
#
# A resource grant covers a resource, a resource template (by its template, so one
# prefix grant covers a template and the reads through it) and every read of a URI it
# covers. A prefix never covers a URI with a dot segment ("..", ".", or their
# percent-encoded forms): "gateway:docs/file:///public/*" must not reach
# "gateway:docs/file:///public/../secret". Listing and reading use the same grants:
# what a principal may read is what it may see listed. A completion is allowed on the
# prompts and templates the principal may see.
package gateway

import rego.v1

decision := resource_decision if {
	input.version == 1
	input.action in {"resources/list", "resources/read", "resources/subscribe"}
}

decision := prompt_decision if {
	input.version == 1
	input.action in {"prompts/list", "prompts/get"}
}

decision := completion_decision if {
	input.version == 1
	input.action == "completion/complete"
}

resource_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("resource_grant") if {
	count(resource_grants(input.resource)) > 0
} else := _deny({no_resource_grant_reason(input.resource)}, "no_resource_grant")

prompt_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("prompt_grant") if {
	count(prompt_grants(input.resource)) > 0
} else := _deny({no_prompt_grant_reason(input.resource)}, "no_prompt_grant")

completion_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("completion_grant") if {
	input.resource.ref == "ref/prompt"
	count(prompt_grants(input.resource)) > 0
} else := _allow("completion_grant") if {
	input.resource.ref == "ref/resource"
	count(resource_grants(input.resource)) > 0
} else := _deny({no_completion_grant_reason}, "no_completion_grant")

no_completion_grant_reason := concat("", [
	"no grant lets roles ", roles_text, " see ",
	text(object.get(input.resource, "prompt", object.get(input.resource, "uri", null))),
])

# --- lists in one evaluation (data.gateway.visible, decision.rego) ---------------------
#
# The same rules as the per-item prompts/list and resources/list decisions, for a
# whole list: the names of the prompts (item.prompt), and the URIs of the resources
# and templates (item.uri), the subject may see. No context, as for tools.

visible := {"visible": [item.prompt | some item in input.items; count(prompt_grants(item)) > 0]} if {
	input.version == 1
	input.action == "prompts/list"
	is_array(input.items)
	count(chain_violations) == 0
}

visible := {"visible": [item.uri | some item in input.items; count(resource_grants(item)) > 0]} if {
	input.version == 1
	input.action == "resources/list"
	is_array(input.items)
	count(chain_violations) == 0
}

# --- resources -------------------------------------------------------------------------

# The caller's grants that cover this resource, template or read.
resource_grants(resource) := {grant |
	is_string(resource.uri)
	some grant in _caller_grants
	is_string(grant.resource)
	uri_covered(grant.resource, resource.uri)
}

uri_covered(pattern, uri) if pattern == uri

uri_covered(pattern, uri) if {
	endswith(pattern, "*")
	startswith(uri, trim_suffix(pattern, "*"))
	not has_dot_segment(uri)
}

# A ".." or "." path segment, literal or percent-encoded (%2e, either case).
has_dot_segment(uri) if {
	some segment in split(replace(lower(uri), "%2e", "."), "/")
	segment in {".", ".."}
}

no_resource_grant_reason(resource) := concat("", [
	"no grant lets roles ", roles_text, " use resource ", text(object.get(resource, "uri", null)),
])

# --- prompts ---------------------------------------------------------------------------

# The caller's grants that cover this prompt: its name, or "<server>__*".
prompt_grants(resource) := {grant |
	names := _prompt_patterns(resource)
	some grant in _caller_grants
	grant.prompt in names
}

_prompt_patterns(resource) := [resource.prompt, concat("", [resource.server, "__*"])] if {
	is_string(resource.server)
} else := [resource.prompt]

no_prompt_grant_reason(resource) := concat("", [
	"no grant lets roles ", roles_text, " use prompt ", text(object.get(resource, "prompt", null)),
])

# --- shared ----------------------------------------------------------------------------

# Grants naming one of the caller's roles, for the caller's tenant (or every tenant).
_caller_grants := {grant |
	some grant in grants
	grant.role in input.subject.roles
	object.get(grant, "tenant", subject_tenant) == subject_tenant
}
