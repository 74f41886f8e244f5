package gateway_test

import rego.v1

import data.gateway

# One grant on demo__run with the given constraints; the decision for `arguments`.
_constrained(constraints, arguments) := d if {
	d := gateway.decision with input as call(["agent"], "demo__run", arguments)
		with data.gateway_data.grants as [{"role": "agent", "tool": "demo__run", "constraints": constraints}]
}

_allows(constraint, arguments) if _constrained([constraint], arguments).allow

_denies(constraint, arguments) if {
	d := _constrained([constraint], arguments)
	not d.allow
	d.rule == "argument_constraint"
}

test_relative_path if {
	c := {"kind": "relative_path", "argument": "path"}
	every path in ["a", "notes/today.txt", "a/./b", "caf\u00e9/\u65e5\u672c.txt", "a..b/c", "...", "a/.hidden"] {
		_allows(c, {"path": path})
	}
	every path in ["/etc/passwd", "..", "../x", "a/..", "a/../b", "", "a\\b", "a\u0000b"] {
		_denies(c, {"path": path})
	}
	every value in [null, 7, ["a"], {"p": "a"}] {
		_denies(c, {"path": value})
	}
	_denies(c, {})
}

test_path_prefix if {
	c := {"kind": "path_prefix", "argument": "path", "prefixes": ["/srv/reports", "/tmp/agent/"]}
	every path in ["/srv/reports", "/srv/reports/", "/srv/reports/q1.csv", "/srv/reports/a/b", "/tmp/agent/x", "/tmp/agent/"] {
		_allows(c, {"path": path})
	}
	every path in [
		"/srv/reports-old/x", "/srv/report", "/srv", "/tmp/agent", "/tmp/agentx",
		"/srv/reports/../secrets", "/srv/reports/a/../../etc", "/srv/reports/..",
		"srv/reports/x", "/srv/reports\\..\\x", "/srv/reports/\u0000", "",
	] {
		_denies(c, {"path": path})
	}
	_denies(c, {"path": 1})
	_denies(c, {})
}

test_path_prefix_ignores_non_string_prefixes if {
	_denies({"kind": "path_prefix", "argument": "path", "prefixes": [1, null]}, {"path": "/x"})
}

test_path_prefix_root_admits_absolute_paths_only if {
	c := {"kind": "path_prefix", "argument": "path", "prefixes": ["/"]}
	_allows(c, {"path": "/etc/hosts"})
	_denies(c, {"path": "etc/hosts"})
	_denies(c, {"path": "/etc/../x"})
}

test_max_length if {
	c := {"kind": "max_length", "argument": "text", "max": 3}
	_allows(c, {"text": ""})
	_allows(c, {"text": "abc"})
	_allows(c, {"text": "\u00e9\u00e9\u00e9"})
	_denies(c, {"text": "abcd"})
	_denies(c, {"text": 3})
	_denies(c, {})
}

test_max_amount if {
	c := {"kind": "max_amount", "argument": "amount", "max": 100}
	every amount in [0, 0.01, 99.99, 100, 100.0] {
		_allows(c, {"amount": amount})
	}
	every amount in [-0.01, -1, 100.001, 101, 1e21, "50", null, true, [1]] {
		_denies(c, {"amount": amount})
	}
	_denies(c, {})
}

test_one_of if {
	c := {"kind": "one_of", "argument": "mode", "values": ["read", "list"]}
	_allows(c, {"mode": "read"})
	_denies(c, {"mode": "write"})
	_denies(c, {"mode": "READ"})
	_denies(c, {})
}

test_one_of_any_json_value if {
	c := {"kind": "one_of", "argument": "n", "values": [1, 2, null]}
	_allows(c, {"n": 2})
	_allows(c, {"n": null})
	_denies(c, {"n": "2"})
}

test_read_only_sql_constraint if {
	c := {"kind": "read_only_sql", "argument": "query"}
	_allows(c, {"query": "SELECT 1"})
	_denies(c, {"query": "DELETE FROM t"})
	_denies(c, {})
}

test_read_only_sql_extra_deny_words if {
	c := {"kind": "read_only_sql", "argument": "query", "deny_words": ["PG_SLEEP"]}
	_allows(c, {"query": "select now()"})
	_denies(c, {"query": "select pg_sleep(10)"})
}

test_optional_constraint if {
	c := {"kind": "max_length", "argument": "note", "max": 2, "optional": true}
	_allows(c, {})
	_allows(c, {"note": "ok"})
	_denies(c, {"note": "too long"})
	_denies(c, {"note": null})
}

test_unknown_kind_never_holds if {
	d := _constrained([{"kind": "no_such_kind", "argument": "x"}], {"x": 1})
	not d.allow
	d.reasons == ["argument 'x' violates constraint no_such_kind"]
}

test_every_constraint_must_hold if {
	constraints := [{"kind": "one_of", "argument": "a", "values": [1]}, {"kind": "one_of", "argument": "b", "values": [2]}]
	_constrained(constraints, {"a": 1, "b": 2}).allow
	d := _constrained(constraints, {"a": 1, "b": 3})
	d.reasons == ["argument 'b' violates constraint one_of"]
}

test_another_satisfied_grant_allows if {
	grants := [
		{"role": "agent", "tool": "demo__run", "constraints": [{"kind": "one_of", "argument": "a", "values": [1]}]},
		{"role": "agent", "tool": "demo__run", "constraints": [{"kind": "one_of", "argument": "a", "values": [2]}]},
	]
	d := gateway.decision with input as call(["agent"], "demo__run", {"a": 2}) with data.gateway_data.grants as grants
	d.allow
}

test_constraint_reason_shows_non_string_names if {
	d := _constrained([{"kind": 7, "argument": ["x"]}], {})
	d.reasons == ["argument '[\"x\"]' violates constraint 7"]
}

test_paths_refuse_control_characters if {
	every path in ["a\nb", "a\tb", "a\rb", "a\u001fb", "a\bb", "a\u000bb"] {
		_denies({"kind": "relative_path", "argument": "path"}, {"path": path})
		_denies({"kind": "path_prefix", "argument": "path", "prefixes": ["/"]}, {"path": concat("", ["/", path])})
	}
	_allows({"kind": "relative_path", "argument": "path"}, {"path": "a\u007fb"})
}
