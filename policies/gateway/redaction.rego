# Redaction obligations: argument fields never written to the audit log or console.
package gateway

import rego.v1

redactions := sort(secret_argument_paths)

secret_argument_paths contains path if {
	some name, _ in input.arguments
	lower(name) in data.gateway_data.secret_argument_names
	path := sprintf("/arguments/%s", [name])
}
