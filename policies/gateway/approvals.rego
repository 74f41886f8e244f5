# approval/decide: may this subject decide this pending approval? The gateway checks
# the same before asking (gateway/approvals/models.py); this is defence in depth, and
# the place to add stricter rules (e.g. only people, never agents, approve).
#
# input.subject is the approver; input.resource.approval:
#   {"id": "apr_…", "tool": "demo__delete_records", "status": "pending",
#    "requester": {"sub": "agent:triage", "iss": "…", "act_chain": [{"sub": "user:alice"}]},
#    "approvers": ["role:approver", "user:bob"], "arguments_hash": "…"}
#
# An entry "role:<r>" is held by subjects with role r; any other entry names a subject,
# compared as identity.rego compares subjects ("user:alice" names "alice" and
# "USER:alice" too). Parties are compared as identities (identity.rego).
#
# Order: delegation chain (the approver's) → malformed → not pending → a party to the
# request (the requester or anyone in its chain, or the requester in the approver's
# chain) → a named approver → otherwise deny.
package gateway

import rego.v1

pending_approval := input.resource.approval

approval_decision := _deny(chain_violations, "delegation_chain") if {
	count(chain_violations) > 0
} else := _deny({"approval/decide needs resource.approval with status, requester.sub and approvers"}, "approval_malformed") if {
	not _approval_well_formed
} else := _deny({concat("", ["approval ", text(pending_approval.id), " is ", pending_approval.status, ", not pending"])}, "approval_not_pending") if {
	pending_approval.status != "pending"
} else := _deny({"the approver took part in the request it would decide"}, "self_approval") if {
	count(_approver_parties & _request_parties) > 0
} else := _allow("approver") if {
	some entry in pending_approval.approvers
	holds_approver_entry(entry)
} else := _deny({concat("", [text(input.subject.sub), " is not one of the approvers ", concat(", ", pending_approval.approvers)])}, "not_an_approver")

_approval_well_formed if {
	is_string(pending_approval.status)
	is_string(pending_approval.requester.sub)
	is_array(object.get(pending_approval.requester, "act_chain", []))
	is_array(pending_approval.approvers)
	every entry in pending_approval.approvers {
		is_string(entry)
	}
}

_request_parties := parties(pending_approval.requester)

_approver_parties := parties(input.subject)

holds_approver_entry(entry) if {
	some role in input.subject.roles
	entry == concat("", ["role:", role])
}

holds_approver_entry(entry) if {
	not startswith(entry, "role:")
	canonical_subject(entry) == canonical_subject(input.subject.sub)
}
