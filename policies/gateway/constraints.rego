# Argument constraints a grant can require. Each names the argument (a top-level key
# of input.arguments) it checks; a missing argument fails the constraint unless the
# constraint says "optional": true. An unknown kind never holds (fail closed).
package gateway

import rego.v1

constraint_holds(c) if {
	c.optional == true
	not _has_argument(c)
}

_has_argument(c) if {
	_ = input.arguments[c.argument]
}

# relative_path: a path that stays inside the folder it is resolved against: not
# absolute, no ".." segment, no backslash (a Windows separator), no control character
# (NUL ends a C string; newlines forge log lines).
constraint_holds(c) if {
	c.kind == "relative_path"
	path := input.arguments[c.argument]
	safe_path(path)
	not startswith(path, "/")
}

# path_prefix: a path under one of c.prefixes ("/srv/reports" admits "/srv/reports"
# and "/srv/reports/x", not "/srv/reports-old"), with the same ".."/backslash/control
# character refusals, so "/srv/reports/../../etc" is not under "/srv/reports".
constraint_holds(c) if {
	c.kind == "path_prefix"
	path := input.arguments[c.argument]
	safe_path(path)
	some prefix in c.prefixes
	is_string(prefix)
	path_under(path, prefix)
}

# max_length: a string argument no longer than c.max characters.
constraint_holds(c) if {
	c.kind == "max_length"
	value := input.arguments[c.argument]
	is_string(value)
	count(value) <= c.max
}

# max_amount: a number (not a numeric string) between 0 and c.max inclusive.
constraint_holds(c) if {
	c.kind == "max_amount"
	value := input.arguments[c.argument]
	is_number(value)
	value >= 0
	value <= c.max
}

# one_of: the argument is one of c.values.
constraint_holds(c) if {
	c.kind == "one_of"
	input.arguments[c.argument] in c.values
}

# read_only_sql: see sql.rego.
constraint_holds(c) if {
	c.kind == "read_only_sql"
	read_only_sql(input.arguments[c.argument], object.get(c, "deny_words", []))
}

safe_path(path) if {
	is_string(path)
	path != ""
	not contains(path, "\\")
	not has_control_character(path)
	every segment in split(path, "/") {
		segment != ".."
	}
}

path_under(path, prefix) if {
	endswith(prefix, "/")
	startswith(path, prefix)
}

path_under(path, prefix) if {
	not endswith(prefix, "/")
	path == prefix
}

path_under(path, prefix) if {
	not endswith(prefix, "/")
	startswith(path, concat("", [prefix, "/"]))
}
