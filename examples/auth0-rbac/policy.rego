# Auth0 RBAC: the token's permissions claim (Auth0 API with RBAC and "Add
# Permissions in the Access Token" on) decides which tools a principal sees,
# with reading and writing separated; image_generation also needs a scope to
# be called (step-up). Permissions count whichever configured issuer signed
# the token; the anonymous principal gets nothing.
#
# Operators edit data.json, not this file:
#
#   access_permissions.read    The permission that shows read-only tools: those
#                              whose catalog annotation readOnlyHint is true.
#   access_permissions.write   The permission that shows every other tool (no
#                              annotation, or readOnlyHint not true: the MCP
#                              default is "may write").
#   tool_permissions.<tool>    [..]: further permissions a tool needs, all of
#                              them, on top of read or write.
#   call_scopes.<tool>         [..]: scopes the token must carry to CALL the
#                              tool (not to see it). One missing: the call is
#                              denied with required_scopes naming all of them
#                              (step-up: 403 insufficient_scope).
#
# Denials are checked in order: tool not visible (missing permissions, or not
# in the catalog), then missing call scopes; reason is the first that applies.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason, required_scopes.

default allow := false

# Set arithmetic over the catalog: one pass to find the read-only tools, the
# rest is intersections and differences, whatever the size of the catalog.
visible_tools := (readable_tools | writable_tools) - withheld_tools

allow if {
	is_call
	tool_name in visible_tools
	count(missing_scopes) == 0
}

reason := sprintf("tool %q requires %s", [tool_name, listing("permission", missing_permissions)]) if {
	is_call
	authenticated
	tool_name in catalog_names
	count(missing_permissions) > 0
} else := sprintf("tool %q is not available", [tool_name]) if {
	is_call
	not tool_name in visible_tools
} else := sprintf("tool %q requires %s", [tool_name, listing("scope", missing_scopes)]) if {
	is_call
	count(missing_scopes) > 0
}

# Every call scope of the tool, held ones included: a client that steps up
# asks for exactly these, and the new token must be enough for the call.
required_scopes := {s | some s in data.call_scopes[tool_name]} if {
	is_call
	tool_name in visible_tools
	count(missing_scopes) > 0
}

# Helpers.

# Anything that is not a principal of a real provider is treated as
# anonymous, and the anonymous principal sees nothing (whatever it holds).
authenticated if {
	provider := input.principal.provider
	is_string(provider)
	not provider in {"", "anonymous"}
}

permissions := {p | some p in input.principal.permissions}

catalog_names := {name | name := input.tools[_].name}

read_only_tools := {name |
	tool := input.tools[_]
	tool.annotations.readOnlyHint == true
	name := tool.name
}

readable_tools := read_only_tools if {
	authenticated
	data.access_permissions.read in permissions
} else := set()

writable_tools := catalog_names - read_only_tools if {
	authenticated
	data.access_permissions.write in permissions
} else := set()

# Tools whose further permissions (data.tool_permissions) the principal lacks.
withheld_tools := {name |
	some name, needed in data.tool_permissions
	some p in needed
	not p in permissions
}

is_call if input.action == "tools/call"

# input.tool.name by its path, not object.get(input, ...): the caches key a
# principal by the fields of input.principal a policy names, and the whole
# input names every one.
default tool_name := ""

tool_name := input.tool.name

# The permissions the called tool needs (same rules as visible_tools, for
# one tool), and those the principal lacks: for the text of a denial.
needed_permissions contains data.access_permissions.read if tool_name in read_only_tools

needed_permissions contains data.access_permissions.write if {
	tool_name in catalog_names
	not tool_name in read_only_tools
}

needed_permissions contains p if {
	some p in data.tool_permissions[tool_name]
}

missing_permissions := needed_permissions - permissions

missing_scopes contains s if {
	some s in data.call_scopes[tool_name]
	not s in input.principal.scopes
}

# "permission a" or "permissions a, b".
listing(word, items) := sprintf("%s %s", [word, concat(", ", sort(items))]) if {
	count(items) == 1
} else := sprintf("%ss %s", [word, concat(", ", sort(items))])
