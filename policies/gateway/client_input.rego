# Requests an upstream makes of the calling client while it answers a request
# (docs/policies.md, "Requests for client input"): the actions elicitation/create,
# sampling/createMessage and roots/list. input.resource names the upstream
# ("upstream", "server"), what the client asked for ("for_method", "for_target"), and
# for elicitation its "mode" and, in URL mode, the "url" and its lower-case "url_host".
# input.arguments are the request's params (the message, the sampling request, …).
#
# Grants in data.gateway_data.grants beside the others:
#   {"role": "agent", "client_input": "*"}                       # every kind, every upstream
#   {"role": "agent", "client_input": "elicitation/create", "upstream": "github"}
#   "tenant" as for tools.
# data.gateway_data.url_elicitation_hosts lists the hosts a URL elicitation may send
# the user to ("example.com", or "*.example.com" for its subdomains); a URL elicitation
# to any other host is denied whatever the grants say.
package gateway

import rego.v1

decision := client_input_decision if {
	input.version == 1
	input.action in {"elicitation/create", "sampling/createMessage", "roots/list"}
}

client_input_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _deny({url_host_reason}, "url_elicitation_host") if {
	input.action == "elicitation/create"
	input.resource.mode == "url"
	not url_host_allowed(input.resource.url_host)
} else := _allow("client_input_grant") if {
	count(client_input_grants) > 0
} else := _deny({no_client_input_grant_reason}, "no_client_input_grant")

# The caller's grants that cover this kind of request from this upstream.
client_input_grants := {grant |
	some grant in _caller_grants
	grant.client_input in {"*", input.action}
	object.get(grant, "upstream", "*") in {"*", input.resource.upstream}
}

url_host_allowed(host) if {
	is_string(host)
	some allowed in object.get(data.gateway_data, "url_elicitation_hosts", [])
	_host_matches(allowed, host)
}

_host_matches(allowed, host) if allowed == host

_host_matches(allowed, host) if {
	startswith(allowed, "*.")
	endswith(host, trim_prefix(allowed, "*"))
}

url_host_reason := concat("", [
	"URL elicitation to ", text(object.get(input.resource, "url_host", null)),
	" is not allowed: the host is not in url_elicitation_hosts",
])

no_client_input_grant_reason := concat("", [
	"no grant lets roles ", roles_text, " be asked ", input.action, " by upstream ",
	text(object.get(input.resource, "upstream", null)),
])
