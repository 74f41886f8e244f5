# Redaction obligations: arguments never written to the audit log, logs or console.
#
# Any key, at any depth of input.arguments (and of each plan step — its arguments and
# its compensation's — for plan/submit), whose name is one of secret_argument_names
# (ASCII case-insensitive) is redacted as a whole; keys below it are not listed again. Paths are RFC 6901
# JSON pointers into the input ("/arguments/headers/Authorization",
# "/arguments/items/0/token").
package gateway

import rego.v1

redactions := sort(secret_paths)

secret_paths contains pointer if {
	some pointer in secret_pointers("/arguments", input.arguments)
}

# For plan/submit, each step as well (its arguments and its compensation's).
secret_paths contains pointer if {
	input.action == "plan/submit"
	some i, step in input.resource.plan.steps
	some pointer in secret_pointers(concat("", ["/resource/plan/steps/", format_int(i, 10)]), step)
}

# Each secret key's pointer, unless a shorter secret path holds it already.
secret_pointers(root, document) := [pointer |
	paths := secret_key_paths(document)
	some path in paths
	count([outer | some outer in paths; count(outer) < count(path); array.slice(path, 0, count(outer)) == outer]) == 0
	pointer := concat("/", array.concat([root], [_pointer_token(t) | some t in path]))
]

# Paths of the keys with secret names in `document`, at any depth. Written for the
# costs of rego-cpp, the former embedded engine (most arguments are flat, and a
# 200-key object is common): top-level keys are enumerated and only nested objects and
# lists are walked; keys are enumerated (`document[key]`, key unbound), never looked
# up one by one; the cheap lower() test runs inline before the exact one.
secret_key_paths(document) := array.concat(
	[[key] |
		_ = document[key]
		is_string(key)
		lower(key) in _secret_names_lower
		is_secret_name(key)
	],
	[array.concat([top], array.concat(path, [key])) |
		nested := document[top]
		type_name(nested) in ["object", "array"]
		walk(nested, [path, node])
		is_object(node)
		_ = node[key]
		is_string(key)
		lower(key) in _secret_names_lower
		is_secret_name(key)
	],
)

# lower() first, as a cheap filter: names equal up to ASCII case are equal after
# lower() on either engine, so it never drops a match; ascii_lower() then decides the
# same on both engines (lower() alone would not, see text.rego).
is_secret_name(name) if {
	is_string(name)
	lower(name) in _secret_names_lower
	ascii_lower(name) in _secret_names_ascii_lower
}

_secret_names_lower := [lower(s) | some s in secret_argument_names]

_secret_names_ascii_lower := [ascii_lower(s) | some s in secret_argument_names]

_pointer_token(token) := format_int(token, 10) if {
	is_number(token)
} else := replace(replace(token, "~", "~0"), "/", "~1")
