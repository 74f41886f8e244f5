# Input builders shared by the *_test.rego files (package gateway_test).
package gateway_test

import rego.v1

subject(roles) := {"sub": "agent:test", "iss": "dev", "roles": roles, "scopes": [], "tenant": null, "act_chain": [], "claims": {}}

resource(tool, risk) := {
	"tool": tool,
	"server": split(tool, "__")[0],
	"upstream_tool": split(tool, "__")[1],
	"annotations": {},
	"risk": risk,
	"definition_hash": "h",
	"labels": [],
}

call_at(roles, tool, arguments, risk) := {
	"version": 1,
	"subject": subject(roles),
	"action": "tools/call",
	"resource": resource(tool, risk),
	"arguments": arguments,
	"context": {},
}

call(roles, tool, arguments) := call_at(roles, tool, arguments, "low")

# The same input with the subject's fields replaced (act_chain, tenant, sub…).
as_subject(inp, fields) := object.union(inp, {"subject": fields})

with_chain(inp, subs) := as_subject(inp, {"act_chain": [{"sub": s} | some s in subs]})

listing(roles, tool) := object.union(call(roles, tool, {}), {"action": "tools/list"})

# A plan/submit input; `tools` is the catalog entry of every demo tool at its usual tier.
plan_input(roles, plan) := {
	"version": 1,
	"subject": subject(roles),
	"action": "plan/submit",
	"resource": {"plan": plan, "tools": catalog},
	"arguments": {},
	"context": {},
}

catalog := {
	"demo__echo": resource("demo__echo", "low"),
	"demo__read_file": resource("demo__read_file", "low"),
	"demo__delete_records": resource("demo__delete_records", "high"),
	"demo__scan": resource("demo__scan", "medium"),
}

tool_step(id, tool) := {"id": id, "kind": "tool", "tool": tool, "arguments": {}, "needs": []}

# An approval/decide input: `approver` decides an approval requested by agent:triage
# acting for user:alice.
decide_input(approver) := {
	"version": 1,
	"subject": approver,
	"action": "approval/decide",
	"resource": {"approval": pending},
	"arguments": {},
	"context": {},
}

pending := {
	"id": "apr_1",
	"tool": "demo__delete_records",
	"status": "pending",
	"requester": {"sub": "agent:triage", "iss": "dev", "act_chain": [{"sub": "user:alice"}]},
	"approvers": ["role:approver", "user:bob"],
	"arguments_hash": "h",
}

person(sub, roles) := {"sub": sub, "iss": "dev", "roles": roles, "scopes": [], "tenant": null, "act_chain": [], "claims": {}}
