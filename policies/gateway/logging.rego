# logging/setLevel (docs/policies.md, "Logging"): the level at which a calling session
# wants upstream log messages; the gateway passes it on to the session's own upstream
# sessions. input.resource is {"kind": "log_level", "server": the endpoint's upstream,
# or null for every upstream (/mcp)}; input.arguments is {"level": "debug"|…}.
#
# data.gateway_data.min_log_level (default "debug": any level) is the lowest level a
# session may ask for: an upstream's debug messages can say more than an agent should
# read (paths, queries, tokens it logged), so a lower level is denied.
package gateway

import rego.v1

decision := log_level_decision if {
	input.version == 1
	input.action == "logging/setLevel"
}

# RFC 5424 severities as MCP names them, lowest first.
log_levels := ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]

log_level_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _allow("log_level") if {
	_log_level_allowed
} else := _deny({log_level_reason}, "log_level_too_low")

_log_level_allowed if {
	some asked, level in log_levels
	level == input.arguments.level
	some lowest, floor in log_levels
	floor == min_log_level
	asked >= lowest
}

log_level_reason := concat("", [
	"log level ", text(object.get(input.arguments, "level", null)),
	" is not allowed: the lowest a session may ask for is ", text(min_log_level),
])
