# One identity per person, as the gateway compares people (gateway/types.py,
# docs/identity.md): the issuer and the canonical subject. A subject's kind
# ("user:", "agent:") is compared without case, and a subject without a kind is a
# user's, so "USER:alice", "user:alice" and "alice" of one issuer are one person.
# The rest of the subject is compared exactly. An actor of a delegation chain that
# names no issuer is of the token's own issuer.
#
# Compare people with these, never with sub strings: a check that compares spellings
# lets a second spelling of one person through (self-approval, blocked actors).
package gateway

import rego.v1

canonical_subject(s) := concat(":", [ascii_lower(parts[0]), rest]) if {
	regex.match(`^[A-Za-z][A-Za-z0-9+.-]*:`, s)
	parts := split(s, ":")
	rest := concat(":", array.slice(parts, 1, count(parts)))
	rest != ""
} else := concat("", ["user:", s])

identity(sub, iss) := {"iss": iss, "sub": canonical_subject(sub)}

# The subject and every actor it acts through, as identities.
parties(principal) := {identity(principal.sub, principal.iss)} | {identity(actor.sub, object.get(actor, "iss", principal.iss)) |
	some actor in object.get(principal, "act_chain", [])
}

# A pattern of actors ("agent:rogue", "agent:untrusted-*", "*") as it matches
# canonical subjects: canonicalized like a subject, except "*" alone (everyone).
canonical_pattern(pattern) := pattern if {
	pattern == "*"
} else := canonical_subject(pattern)
