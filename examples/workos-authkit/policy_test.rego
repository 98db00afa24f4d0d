package mcp.authz_test

import data.mcp.authz

# Fixtures: WorkOS AuthKit principals (the MCP access token has sub, org_id
# and scope; no permissions, no roles) and toolgate's catalog.

acme := "org_01HRACMEACMEACMEACMEACMEAC"

globex := "org_01HRGLOBEXGLOBEXGLOBEXGLOB"

alice := "user_01JQALICEALICEALICEALICEA"

bob := "user_01JQBOBBOBBOBBOBBOBBOBBOB"

member(sub, org) := {
	"sub": sub,
	"iss": "https://example.authkit.app",
	"client_id": "client_01JQ",
	"provider": "workos",
	"org_id": org,
	"scopes": ["openid"],
	"permissions": [],
	"roles": [],
	"claims": {},
}

alice_at_acme := member(alice, acme)

anonymous := object.union(member("", ""), {"iss": "", "client_id": "", "provider": "anonymous", "scopes": []})

catalog := [
	{"name": "add", "description": "Add two numbers", "annotations": {"readOnlyHint": true}},
	{"name": "image_generation", "description": "Generate an image", "annotations": {"readOnlyHint": false}},
	{"name": "whoami", "description": "Who am I", "annotations": {"readOnlyHint": true}},
]

list_input(principal) := {"principal": principal, "action": "tools/list", "tools": catalog}

call_input(principal, name) := {
	"principal": principal,
	"action": "tools/call",
	"tools": catalog,
	"tool": {"name": name, "annotations": {}},
	"arguments": {},
}

visible(principal) := tools if {
	tools := authz.visible_tools with input as list_input(principal)
}

# Visibility.

test_member_of_allowed_organization_gets_its_roles if {
	visible(member(bob, acme)) == {"add", "whoami"}
}

test_organization_roles_differ_by_organization if {
	visible(member(bob, globex)) == {"add", "whoami", "image_generation"}
}

test_member_roles_add_to_organization_roles if {
	visible(member(alice, acme)) == {"add", "whoami", "image_generation"}
}

test_member_roles_apply_only_in_their_organization if {
	# Alice's extra role is in Acme; in an organisation without member
	# roles for her she gets its roles only.
	rules := object.union(data.organization_roles, {globex: ["member"]})
	got := authz.visible_tools with input as list_input(member(alice, globex))
		with data.organization_roles as rules
	got == {"add", "whoami"}
}

test_member_roles_alone_are_enough if {
	got := authz.visible_tools with input as list_input(member(alice, acme))
		with data.organization_roles as {}
	got == {"image_generation"}
}

test_organization_not_on_allow_list_sees_nothing if {
	visible(member(alice, "org_01HROTHER")) == set()
}

test_allow_list_wins_over_roles if {
	# Acme keeps its roles in data but is taken off the allow-list.
	got := authz.visible_tools with input as list_input(member(alice, acme))
		with data.allowed_organizations as [globex]
	got == set()
}

test_token_without_organization_sees_nothing if {
	visible(member(alice, "")) == set()
	got := authz.visible_tools with input as list_input(member(alice, ""))
		with data.allowed_organizations as [""]
		with data.organization_roles as {"": ["member"]}
	got == set()
}

test_roles_and_permissions_in_the_token_are_ignored if {
	principal := object.union(member(bob, acme), {"roles": ["image-creator"], "permissions": ["image_generation"]})
	visible(principal) == {"add", "whoami"}
}

test_unknown_role_grants_nothing if {
	got := authz.visible_tools with input as list_input(member(bob, acme))
		with data.organization_roles as {acme: ["viewer"]}
	got == set()
}

test_anonymous_sees_nothing if {
	visible(anonymous) == set()
	visible(object.union(anonymous, {"org_id": acme})) == set()
}

test_other_providers_see_nothing if {
	every provider in ["auth0", "stytch", "oidc", ""] {
		visible(object.union(member(alice, acme), {"provider": provider})) == set()
	}
}

test_providers_come_from_data if {
	got := authz.visible_tools with input as list_input(object.union(member(bob, acme), {"provider": "oidc"}))
		with data.providers as ["workos", "oidc"]
	got == {"add", "whoami"}
}

test_missing_principal_sees_nothing if {
	got := authz.visible_tools with input as {"action": "tools/list", "tools": catalog}
	got == set()
}

test_only_catalog_tools_are_visible if {
	got := authz.visible_tools with input as object.union(list_input(member(alice, acme)), {"tools": [catalog[0]]})
	got == {"add"}
}

# A catalog of 1000 tools and 500 roles, each granting two tools.
big_catalog := array.concat(catalog, [{"name": sprintf("tool_%d", [i]), "description": "", "annotations": {}} |
	some i in numbers.range(1, 997)
])

test_visible_tools_with_1000_tool_catalog if {
	role_tools := {sprintf("role_%d", [i]): [sprintf("tool_%d", [i]), sprintf("tool_%d", [i + 500])] | some i in numbers.range(1, 500)}
	principal := member(bob, acme)
	got := authz.visible_tools with input as object.union(list_input(principal), {"tools": big_catalog})
		with data.role_tools as role_tools
		with data.organization_roles as {acme: ["role_1", "role_2", "role_499"]}

	# role_499's tool_999 is not in the catalog.
	got == {"tool_1", "tool_2", "tool_499", "tool_501", "tool_502"}
}

# Calls.

test_call_of_granted_tool_allowed if {
	inp := call_input(alice_at_acme, "image_generation")
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_call_of_tool_not_granted_denied if {
	inp := call_input(member(bob, acme), "image_generation")
	not authz.allow with input as inp
	authz.reason == `tool "image_generation" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_from_organization_not_allowed_names_it if {
	inp := call_input(member(alice, "org_01HROTHER"), "add")
	not authz.allow with input as inp
	authz.reason == `organization "org_01HROTHER" is not allowed` with input as inp
}

test_call_without_organization_denied if {
	inp := call_input(member(alice, ""), "add")
	not authz.allow with input as inp
	authz.reason == "the token names no organization" with input as inp
}

test_anonymous_call_not_available if {
	inp := call_input(anonymous, "add")
	not authz.allow with input as inp
	authz.reason == `tool "add" is not available` with input as inp
}

test_call_of_unknown_tool_not_available if {
	inp := call_input(alice_at_acme, "no_such_tool")
	not authz.allow with input as inp
	authz.reason == `tool "no_such_tool" is not available` with input as inp
	missing := object.remove(call_input(alice_at_acme, "add"), ["tool"])
	authz.reason == `tool "" is not available` with input as missing
}

test_allow_is_false_outside_tools_call if {
	inp := object.union(call_input(alice_at_acme, "add"), {"action": "tools/list"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
}

test_default_data_has_no_unknown_roles_or_organizations if {
	# Every role handed out has tools, and every organisation with roles is
	# on the allow-list (otherwise its roles are dead data).
	every _, roles in data.organization_roles {
		every role in roles {
			data.role_tools[role]
		}
	}
	every org, _ in data.organization_roles {
		org in data.allowed_organizations
	}
	every org, members in data.member_roles {
		org in data.allowed_organizations
		every _, roles in members {
			every role in roles {
				data.role_tools[role]
			}
		}
	}
}
