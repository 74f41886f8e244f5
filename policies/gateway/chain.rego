# Delegation-chain rules, for every action.
#
# input.subject.act_chain lists the actors of the token's nested "act" claims, the
# current actor first (RFC 8693). Its last entry is the origin of the delegation;
# with no chain, the subject itself is the origin.
#
#   max_chain_length  at most this many actors in the chain
#   blocked_actors    actors that may not appear in the chain ("agent:rogue",
#                     or a prefix pattern such as "agent:untrusted-*")
#   required_origin   when non-empty, the origin must match one of these patterns
#                     (e.g. ["user:*"]: every request traces back to a person)
#
# Actors and patterns are compared as canonical subjects (identity.rego), so another
# spelling of a blocked actor ("AGENT:rogue") is blocked too.
package gateway

import rego.v1

act_chain := object.get(input.subject, "act_chain", [])

chain_violations contains msg if {
	count(act_chain) > max_chain_length
	msg := concat("", [
		"delegation chain has ", format_int(count(act_chain), 10), " actors; at most ",
		text(max_chain_length), " allowed",
	])
}

chain_violations contains msg if {
	some actor in act_chain
	some pattern in blocked_actors
	pattern_matches(canonical_pattern(pattern), canonical_subject(actor.sub))
	msg := concat("", ["actor ", text(actor.sub), " may not appear in a delegation chain"])
}

chain_violations contains msg if {
	count(required_origin) > 0
	not _origin_allowed
	msg := concat("", ["delegation origin ", text(chain_origin), " is not one of ", concat(", ", required_origin)])
}

chain_origin := act_chain[count(act_chain) - 1].sub if {
	count(act_chain) > 0
} else := input.subject.sub

_origin_allowed if {
	some pattern in required_origin
	pattern_matches(canonical_pattern(pattern), canonical_subject(chain_origin))
}
