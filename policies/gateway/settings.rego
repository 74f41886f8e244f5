# Settings: each key of data.gateway_data with its default, so a data document written
# for an older policy (without the newer keys) keeps working, and every rule reads one
# place. One rule per key rather than one merged object: most decisions read few
# keys, and an engine may build the object on every decision.
package gateway

import rego.v1

default _data_settings := {}

_data_settings := data.gateway_data if is_object(data.gateway_data)

# Grants (grants.rego).
grants := object.get(_data_settings, "grants", [])

# Delegation chain (chain.rego).
max_chain_length := object.get(_data_settings, "max_chain_length", 4)

blocked_actors := object.get(_data_settings, "blocked_actors", [])

required_origin := object.get(_data_settings, "required_origin", [])

# Approvals: the TTL of an approval whose grant or tier does not set ttl_s.
approval_ttl_s := object.get(_data_settings, "approval_ttl_s", 3600)

# Risk (risk.rego): tiers from lowest to highest; see approval_for_risk and
# role_max_risk in docs/policies.md.
risk_tiers := object.get(_data_settings, "risk_tiers", ["low", "medium", "high"])

approval_for_risk := object.get(_data_settings, "approval_for_risk", null)

role_max_risk := object.get(_data_settings, "role_max_risk", {})

# Plans (plans.rego).
max_plan_steps := object.get(_data_settings, "max_plan_steps", 50)

# Workflows (workflows.rego): who may submit ad hoc plans (null: anyone), the review
# of ad hoc plans, who publishes, and each channel's promoters and approvers.
ad_hoc_plan_roles := object.get(_data_settings, "ad_hoc_plan_roles", null)

plan_review := object.get(_data_settings, "plan_review", null)

workflow_publisher_roles := object.get(_data_settings, "workflow_publisher_roles", ["workflow_author"])

workflow_channels := object.get(_data_settings, "workflow_channels", {})

# Redaction (redaction.rego): argument names, compared in ASCII lower case.
secret_argument_names := object.get(_data_settings, "secret_argument_names", ["api_key", "authorization", "password", "secret", "token"])

# Logging (logging.rego): the lowest level a session may ask for.
min_log_level := object.get(_data_settings, "min_log_level", "debug")

# Limits (limits.rego): calls per window and concurrent calls; none by default.
limits := object.get(_data_settings, "limits", [])
