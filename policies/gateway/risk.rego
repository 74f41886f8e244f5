# Risk tiers. input.resource.risk is computed by the gateway: the admin's config first,
# then the tool's annotations, but only from upstreams the admin marked as trusted
# (an untrusted server could call its destructive tool read-only). So "destructive
# tools need approval" is written as a tier rule, approval_for_risk, and never reads
# input.resource.annotations, which an upstream controls.
#
# Misspelt tiers fail closed: a tool tier missing from risk_tiers ranks above every
# tier, a threshold or limit missing from it ranks below every tier.
package gateway

import rego.v1

# Rank of a tool's tier: its index in risk_tiers; unknown tiers rank highest.
risk_rank(tier) := ranks[0] if {
	ranks := [i | risk_tiers[i] == tier]
	count(ranks) > 0
} else := count(risk_tiers)

# Rank of a threshold or limit from data; unknown ones rank below every tier.
threshold_rank(tier) := ranks[0] if {
	ranks := [i | risk_tiers[i] == tier]
	count(ranks) > 0
} else := -1

# A grant's risk limits: its own max_risk and its role's (role_max_risk).
# (Counted comprehensions rather than `every`: the common grant without limits never
# ranks anything.)
within_risk_limits(grant, resource) if {
	limits := [limit |
		some limit in [object.get(grant, "max_risk", null), object.get(role_max_risk, grant.role, null)]
		limit != null
	]
	count([limit | some limit in limits; risk_rank(resource.risk) > threshold_rank(limit)]) == 0
}

# The approval every tool at or above approval_for_risk.min_risk waits for.
risk_gates(resource) := {gate |
	config := approval_for_risk
	is_object(config)
	risk_rank(resource.risk) >= threshold_rank(object.get(config, "min_risk", null))
	gate := {
		"source": "risk",
		"approvers": object.get(config, "approvers", []),
		"ttl_s": object.get(config, "ttl_s", approval_ttl_s),
	}
}

risk_violation(resource) := concat("", [
	"risk ", text(resource.risk), " of ", text(resource.tool),
	" is above what roles ", roles_text, " may call",
])
