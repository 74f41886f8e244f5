# Delegation-chain rules: how long an act chain may be, and who may not appear in it.
package gateway

import rego.v1

chain_violations contains msg if {
	count(input.subject.act_chain) > data.gateway_data.max_chain_length
	msg := sprintf("delegation chain has %d actors; at most %d allowed", [count(input.subject.act_chain), data.gateway_data.max_chain_length])
}

chain_violations contains msg if {
	some actor in input.subject.act_chain
	actor.sub in data.gateway_data.blocked_actors
	msg := sprintf("actor %s may not appear in a delegation chain", [actor.sub])
}
