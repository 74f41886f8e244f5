# Argument constraints a grant can require.
package gateway

import rego.v1

# relative_path: a path that stays inside the folder it is resolved against: not
# absolute, no ".." segment, no backslashes (Windows separators), no NUL.
constraint_holds(c) if {
	c.kind == "relative_path"
	path := input.arguments[c.argument]
	is_string(path)
	path != ""
	not startswith(path, "/")
	not contains(path, "\\")
	not contains(path, "\u0000")
	every segment in split(path, "/") {
		segment != ".."
	}
}

# max_length: a string argument no longer than c.max.
constraint_holds(c) if {
	c.kind == "max_length"
	value := input.arguments[c.argument]
	is_string(value)
	count(value) <= c.max
}

# one_of: the argument is one of c.values.
constraint_holds(c) if {
	c.kind == "one_of"
	input.arguments[c.argument] in c.values
}
