# Text helpers. Several were shaped for rego-cpp, the former embedded engine, which
# held strings in their JSON-escaped form; they are exact on OPA and its WebAssembly.
package gateway

import rego.v1

# A value as text for a reason: strings as they are, anything else as JSON.
text(value) := value if {
	is_string(value)
} else := json.marshal(value)

roles_text := "(none)" if {
	count(object.get(input.subject, "roles", [])) == 0
} else := concat(", ", [text(role) | some role in input.subject.roles])

# ASCII-only lower case: A-Z folded, every other character kept. The built-in lower()
# folds all of Unicode (and turns the Kelvin sign K into an ASCII "k"), so names and
# keywords compared through it could be spelt with characters that only look alike.
ascii_lower(s) := strings.replace_n(_ascii_upper_to_lower, s)

_ascii_upper_to_lower := {
	"A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "F": "f", "G": "g",
	"H": "h", "I": "i", "J": "j", "K": "k", "L": "l", "M": "m", "N": "n",
	"O": "o", "P": "p", "Q": "q", "R": "r", "S": "s", "T": "t", "U": "u",
	"V": "v", "W": "w", "X": "x", "Y": "y", "Z": "z",
}

# The smallest number of a collection (a set or an array of numbers).
least(numbers) := x if {
	some x in numbers
	every y in numbers {
		x <= y
	}
}

# Glob-lite patterns for actors: "user:*" matches every sub starting with "user:";
# anything else matches itself. Plain prefixes, not glob.match: "*" means nothing
# else, so an actor name holding glob syntax cannot widen a pattern.
pattern_matches(pattern, value) if pattern == value

pattern_matches(pattern, value) if {
	endswith(pattern, "*")
	startswith(value, trim_suffix(pattern, "*"))
}

# True when s holds a control character (U+0000 to U+001F). The cheap plain_text test
# first; the search over the 32 characters only for text that fails it.
has_control_character(s) if {
	not plain_text(s)
	count([c | some c in _control_characters; contains(s, c)]) > 0
}

_control_characters := [
	"\u0000", "\u0001", "\u0002", "\u0003", "\u0004", "\u0005", "\u0006", "\u0007",
	"\b", "\t", "\n", "\u000b", "\f", "\r", "\u000e", "\u000f",
	"\u0010", "\u0011", "\u0012", "\u0013", "\u0014", "\u0015", "\u0016", "\u0017",
	"\u0018", "\u0019", "\u001a", "\u001b", "\u001c", "\u001d", "\u001e", "\u001f",
]

# Printable ASCII other than '"' and backslash: text that JSON never escapes. A cheap
# first check: one character outside the set is searched for.
plain_text(s) if not regex.match("[^ !#-\\[\\]-~]", s)
