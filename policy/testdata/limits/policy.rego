# A policy whose limits read the arguments, for the fast path's differential
# test (fastpath_test.go): a decision cached without its arguments would
# carry another call's limits.
package mcp.authz

visible_tools := {t.name | some t in input.tools}

default allow := false

allow if input.action == "tools/call"

# Constant for the principal and tool: argument-free.
limits contains {"key": sprintf("tool %s %s", [input.tool.name, input.principal.sub]), "rate": 10, "per": "1m"} if {
	input.tool.name == "add"
}

# Keyed by an argument.
limits contains {"key": sprintf("prompt %v", [input.arguments.prompt]), "rate": 2, "per": "1h"} if {
	input.tool.name == "image_generation"
	is_string(input.arguments.prompt)
}

# Present or not by an argument.
limits contains {"key": "big", "rate": 1, "per": "24h", "name": "big numbers"} if {
	input.arguments.a > 1000
}
