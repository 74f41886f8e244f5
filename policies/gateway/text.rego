# Text helpers that give the same answer in OPA and in the embedded engine.
package gateway

import rego.v1

# A value as text for a reason: strings as they are, anything else as JSON.
text(value) := value if {
	is_string(value)
} else := json.marshal(value)

roles_text := "(none)" if {
	count(object.get(input.subject, "roles", [])) == 0
} else := concat(", ", [text(role) | some role in input.subject.roles])

# ASCII-only lower case. The built-in lower() folds non-ASCII letters in OPA but not
# in rego-cpp (and OPA folds the Kelvin sign K into an ASCII "k"), so matching names
# and keywords through lower() would differ between the engines. lower() is exact on
# ASCII text and much cheaper in rego-cpp than the replacement table, so it is used
# whenever the text is ASCII; the regular expression has no escaped characters to
# trip over (escaped characters are ASCII in both forms).
ascii_lower(s) := lower(s) if {
	not regex.match("[^\u0000-\u007f]", s)
} else := strings.replace_n(_ascii_upper_to_lower, s)

_ascii_upper_to_lower := {
	"A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "F": "f", "G": "g",
	"H": "h", "I": "i", "J": "j", "K": "k", "L": "l", "M": "m", "N": "n",
	"O": "o", "P": "p", "Q": "q", "R": "r", "S": "s", "T": "t", "U": "u",
	"V": "v", "W": "w", "X": "x", "Y": "y", "Z": "z",
}

# The smallest number of a collection. Not min(): rego-cpp's min, max and sort order
# numbers as text (min({600, 3600}) is 3600 there), while its comparisons are numeric.
least(numbers) := x if {
	some x in numbers
	every y in numbers {
		x <= y
	}
}

# Glob-lite patterns for actors: "user:*" matches every sub starting with "user:";
# anything else matches itself. Plain prefixes, not glob.match: startswith agrees
# between the engines for every string, glob and regex built-ins do not.
pattern_matches(pattern, value) if pattern == value

pattern_matches(pattern, value) if {
	endswith(pattern, "*")
	startswith(value, trim_suffix(pattern, "*"))
}

# True when s holds a control character (U+0000 to U+001F). The literals are written
# as the escapes RFC 8785 uses ("\b", "\t", "\u000b"…): the embedded engine compares
# them with the canonical JSON of the input, where "\u0008" would never match "\b".
# Only safe on strings without a backslash: in the embedded engine's escaped form, the
# backslash-n of a literal "\\n" looks like a newline.
#
# A comprehension, not `some character in …` in the body: rego-cpp runs the iteration
# before the cheap `not plain_text(s)` test otherwise (about 0.6 ms a call).
has_control_character(s) if {
	not plain_text(s)
	count([c | some c in _control_characters; contains(s, c)]) > 0
}

# An array, not a set: rego-cpp builds a set literal on every decision, at a cost
# (about 0.3 ms for these 32 strings).
_control_characters := [
	"\u0000", "\u0001", "\u0002", "\u0003", "\u0004", "\u0005", "\u0006", "\u0007",
	"\b", "\t", "\n", "\u000b", "\f", "\r", "\u000e", "\u000f",
	"\u0010", "\u0011", "\u0012", "\u0013", "\u0014", "\u0015", "\u0016", "\u0017",
	"\u0018", "\u0019", "\u001a", "\u001b", "\u001c", "\u001d", "\u001e", "\u001f",
]

# Printable ASCII other than '"' and backslash: text that JSON never escapes, so both
# engines hold it the same way and any test on it agrees. A cheap first check.
# Searched for one character outside the set, never matched as "^[…]*$": rego-cpp's
# regular expressions recurse per character on such a pattern and crash the process
# on strings of about 100,000 characters.
plain_text(s) if not regex.match("[^ !#-\\[\\]-~]", s)
