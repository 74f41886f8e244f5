# read_only_sql: a conservative guard for tools that run SQL. It refuses anything it
# cannot read with certainty; it is not a SQL parser and not a substitute for a
# read-only database role.
#
# A query passes when it is a string with
# - no backslash and no control character other than tab, CR and LF;
# - at most one ";", and only at the end (followed by whitespace at most);
# - a first word SELECT, WITH, EXPLAIN or SHOW (case-insensitive);
# - no write or DDL keyword as a whole word anywhere, including inside string
#   literals and comments (words are runs of ASCII letters and "_", so "updated_at"
#   is one word and "drop2" holds the word "drop"), nor any of the constraint's
#   own deny_words.
#
# Why the refusals come first: a backslash or a control character is where a reader
# of SQL and this guard could split a query into words differently (escapes, odd
# whitespace); the guard refuses what it cannot read with certainty.
package gateway

import rego.v1

read_only_sql(sql, deny_words) if {
	is_string(sql)
	not contains(sql, "\\")
	spaced := strings.replace_n({"\t": " ", "\n": " ", "\r": " "}, sql)
	not has_control_character(spaced)
	flat := ascii_lower(spaced)
	_single_statement(flat)
	words := [m[0] | some m in regex.find_all_string_submatch_n("[a-z_]+", flat, -1)]
	count(words) > 0
	words[0] in sql_first_words

	# Counted comprehensions (a shape kept from the former embedded engine, rego-cpp,
	# which got negation inside `every` wrong).
	count([word | some word in words; word in sql_write_words]) == 0
	refused := [ascii_lower(w) | some w in deny_words]
	count([word | some word in words; word in refused]) == 0
}

sql_first_words := ["select", "with", "explain", "show"]

# Keywords that write or change schema or permissions, or run code. Statements that
# can only start with their keyword (VACUUM, LOCK, PRAGMA…) are refused by the first
# word already.
sql_write_words := [
	"alter", "call", "copy", "create", "delete", "drop", "exec", "execute",
	"grant", "insert", "into", "merge", "nextval", "revoke", "setval",
	"truncate", "update", "upsert",
]

_single_statement(flat) if not contains(flat, ";")

_single_statement(flat) if {
	parts := split(flat, ";")
	count(parts) == 2
	replace(parts[1], " ", "") == ""
}
