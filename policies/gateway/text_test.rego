package gateway_test

import rego.v1

import data.gateway

test_text if {
	gateway.text("a") == "a"
	gateway.text(1) == "1"
	gateway.text(null) == "null"
	gateway.text(["a"]) == "[\"a\"]"
}

test_ascii_lower if {
	gateway.ascii_lower("SELECT Abc_Z") == "select abc_z"
	gateway.ascii_lower("\u00c9\u212a") == "\u00c9\u212a"
}

test_pattern_matches if {
	gateway.pattern_matches("user:bob", "user:bob")
	gateway.pattern_matches("user:*", "user:bob")
	gateway.pattern_matches("*", "anything")
	not gateway.pattern_matches("user:*", "agent:bob")
	not gateway.pattern_matches("user:bob", "user:bobby")
	not gateway.pattern_matches("user:b*b", "user:bob")
}

test_roles_text if {
	r := gateway.roles_text with input as {"subject": {"roles": ["a", "b"]}}
	r == "a, b"
	none := gateway.roles_text with input as {"subject": {}}
	none == "(none)"
}

test_least if {
	gateway.least({600, 3600}) == 600
	gateway.least([10, 9, 100]) == 9
	gateway.least([2, 2]) == 2
	not gateway.least([])
}

test_has_control_character if {
	every s in ["\u0000", "a\nb", "\t", "\r", "\b", "\f", "\u001f", "\u000b"] {
		gateway.has_control_character(s)
	}
	every s in ["", "abc", "\u007f", "caf\u00e9", "\\n", "a b"] {
		not gateway.has_control_character(s)
	}
}

test_plain_text if {
	every s in ["", "abc", "notes/today.txt", " !#$%&'()*+,-./:;<=>?@[]^_`{|}~"] {
		gateway.plain_text(s)
	}
	every s in ["a\"b", "a\\b", "a\nb", "caf\u00e9", "a\u007fb"] {
		not gateway.plain_text(s)
	}
}
