"""A policy with a hostile rule per `arguments.kind`, for the sandbox tests (unit and
e2e): each must end in a clean deny, with the engine serving on."""

HOSTILE = """package gateway

import rego.v1

default decision := {"allow": false, "reasons": ["no rule applies"], "rule": "default_deny"}

# The shape that backtracking engines take exponential time over.
decision := {"allow": true, "reasons": ["only a's"], "rule": "regex"} if {
	input.arguments.kind == "regex"
	regex.match("^(a+)+$", input.arguments.text)
}

# Ten billion iterations of nested comprehensions: never finishes.
decision := {"allow": true, "reasons": ["spun"], "rule": "spin"} if {
	input.arguments.kind == "spin"
	n := numbers.range(1, 100000)
	count([1 | some a in n; some b in n; a * b < 0]) > 0
}

# A hundred thousand copies of the argument, a megabyte each: allocates until the cap.
decision := {"allow": true, "reasons": ["allocated"], "rule": "alloc"} if {
	input.arguments.kind == "alloc"
	count(concat("", [input.arguments.text | some _ in numbers.range(1, 100000)])) > 0
}

decision := {"allow": true, "reasons": ["fine"], "rule": "fine"} if input.arguments.kind == "fine"
"""
