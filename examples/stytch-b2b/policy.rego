# Stytch B2B: custom scopes (read:okrs, manage:krs) decide which tools a
# member sees and calls, and calls stay inside the member's organisation.
#
# Operators edit data.json, not this file:
#
#   providers                  [..]: issuer presets whose principals this policy
#                              serves ("stytch"). Anyone else, the anonymous
#                              principal included, sees nothing.
#   scope_tools.<scope>        [..]: tools a token carrying that scope sees.
#                              Only organisation members (an org_id in the
#                              token) see anything.
#   call_scopes.<tool>         [..]: scopes the token must carry to CALL the
#                              tool (not to see it). One missing: the call is
#                              denied with required_scopes naming all of them
#                              (step-up: 403 insufficient_scope).
#   organization_arguments     [..]: argument names that hold an organisation
#                              id, at any depth of the arguments. A call whose
#                              argument of that name is anything but the
#                              caller's own org_id is denied (no step-up helps).
#
# Denials are checked in order: tool not visible, another organisation in
# the arguments, missing call scopes; reason is the first that applies.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason, required_scopes.

default allow := false

# The catalog's names intersected with the tools the scopes grant.
visible_tools := {name | name := input.tools[_].name} & granted_tools

allow if {
	is_call
	tool_name in visible_tools
	count(organization_violations) == 0
	count(missing_scopes) == 0
}

# The first denial that applies, each rule excluding the ones before it.
# (Not an else chain: OPA's partial evaluation, which lets the gate decide a
# call from its arguments alone, does not see through else, so a chain whose
# last step reads the arguments would be evaluated whole for every call.)
reason := sprintf("tool %q is not available", [tool_name]) if {
	is_call
	not tool_name in visible_tools
}

reason := concat("; ", sort(organization_violations)) if {
	callable
	count(organization_violations) > 0
}

reason := sprintf("tool %q requires %s", [tool_name, listing("scope", missing_scopes)]) if {
	callable
	count(organization_violations) == 0
	count(missing_scopes) > 0
}

# Every call scope of the tool, held ones included, and only when scopes are
# all that stands between the caller and the call.
required_scopes := {s | some s in data.call_scopes[tool_name]} if {
	is_call
	tool_name in visible_tools
	count(organization_violations) == 0
	count(missing_scopes) > 0
}

# Helpers.

authenticated if input.principal.provider in data.providers

# From the token's "https://stytch.com/organization".organization_id.
org_id := input.principal.org_id

organization_member if {
	authenticated
	org_id != ""
}

granted_tools contains name if {
	organization_member
	some scope in input.principal.scopes
	some name in data.scope_tools[scope]
}

is_call if input.action == "tools/call"

callable if {
	is_call
	tool_name in visible_tools
}

# input.tool.name by its path, not object.get(input, ...): the caches key a
# principal by the fields of input.principal a policy names, and the whole
# input names every one.
default tool_name := ""

tool_name := input.tool.name

missing_scopes contains s if {
	some s in data.call_scopes[tool_name]
	not s in input.principal.scopes
}

# Arguments, at any depth, that name an organisation other than the caller's.
organization_violations contains sprintf("argument %q must be your organization %q", [argument_path(path), org_id]) if {
	walk(input.arguments, [path, value])
	count(path) > 0
	path[count(path) - 1] in data.organization_arguments
	value != org_id
}

argument_path(path) := concat(".", [sprintf("%v", [p]) | some p in path])

# "scope a" or "scopes a, b".
listing(word, items) := sprintf("%s %s", [word, concat(", ", sort(items))]) if {
	count(items) == 1
} else := sprintf("%ss %s", [word, concat(", ", sort(items))])
