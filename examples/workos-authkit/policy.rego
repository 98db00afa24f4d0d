# WorkOS AuthKit: its MCP access tokens carry the user (sub) and the
# organisation (org_id) but no permissions or roles, so roles come from this
# policy's data, and only organisations on an allow-list get anything.
#
# Operators edit data.json, not this file:
#
#   providers                    [..]: issuer presets whose principals this
#                                policy serves ("workos"). Anyone else, the
#                                anonymous principal included, sees nothing.
#   allowed_organizations        [..]: WorkOS organisation ids (org_...). A token
#                                whose org_id is not listed, or that has none,
#                                sees nothing, whatever the rest of the data says.
#   organization_roles.<org>     [..]: roles of every member of that organisation.
#   member_roles.<org>.<user>    [..]: further roles of one user (sub, user_...)
#                                in that organisation only, like a WorkOS
#                                organisation membership's role.
#   role_tools.<role>            [..]: tool names a role may see and call.
#
# A tool must also be in the catalog (input.tools) to be visible. A call runs
# only when its tool is visible; there are no call scopes, so no step-up.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason.

default allow := false

# The catalog's names intersected with the tools the roles grant.
visible_tools := {name | name := input.tools[_].name} & granted_tools

allow if {
	is_call
	tool_name in visible_tools
}

reason := "the token names no organization" if {
	is_call
	authenticated
	org_id == ""
} else := sprintf("organization %q is not allowed", [org_id]) if {
	is_call
	authenticated
	not organization_allowed
} else := sprintf("tool %q is not available", [tool_name]) if {
	is_call
	not tool_name in visible_tools
}

# Helpers.

authenticated if input.principal.provider in data.providers

org_id := input.principal.org_id

organization_allowed if {
	authenticated
	org_id != ""
	org_id in data.allowed_organizations
}

# The principal's roles in the organisation of its token.
roles contains role if {
	organization_allowed
	some role in data.organization_roles[org_id]
}

roles contains role if {
	organization_allowed
	some role in data.member_roles[org_id][input.principal.sub]
}

granted_tools contains name if {
	some role in roles
	some name in data.role_tools[role]
}

is_call if input.action == "tools/call"

# input.tool.name by its path, not object.get(input, ...): the caches key a
# principal by the fields of input.principal a policy names, and the whole
# input names every one.
default tool_name := ""

tool_name := input.tool.name
