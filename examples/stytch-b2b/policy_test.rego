package mcp.authz_test

import data.mcp.authz

# Fixtures: Stytch B2B members (the organisation comes from the token's
# "https://stytch.com/organization" claim) and a fictional OKR catalog.

acme := "organization-test-07971b06-ac8b-4cdb-9c15-63b17e653931"

globex := "organization-test-5f3e8c1a-2b7d-4e9f-a6c0-d1e2f3a4b5c6"

member(scopes) := {
	"sub": "member-test-32fc5024-9c09-4da3-bd2e-c9ce4da9375f",
	"iss": "https://example.customers.stytch.dev",
	"client_id": "connected-app-test-d731954d-dab3-4a2b-bdee-07f3ad1be885",
	"provider": "stytch",
	"org_id": acme,
	"scopes": scopes,
	"permissions": [],
	"roles": ["stytch_member"],
	"claims": {
		"scope": concat(" ", scopes),
		"https://stytch.com/organization": {"organization_id": acme, "slug": "acme"},
	},
}

reader := member(["openid", "read:okrs"])

manager := member(["openid", "read:okrs", "manage:krs"])

# After a step-up the token may carry the challenged scope alone.
stepped_up := member(["manage:krs"])

anonymous := object.union(member([]), {"sub": "", "iss": "", "client_id": "", "provider": "anonymous", "org_id": "", "roles": [], "claims": {}})

catalog := [
	{"name": "list_okrs", "description": "List the organization's OKRs", "annotations": {"readOnlyHint": true}},
	{"name": "update_kr", "description": "Update a key result", "annotations": {"readOnlyHint": false}},
	{"name": "whoami", "description": "Who am I", "annotations": {"readOnlyHint": true}},
]

list_input(principal) := {"principal": principal, "action": "tools/list", "tools": catalog}

call_input(principal, name, args) := {
	"principal": principal,
	"action": "tools/call",
	"tools": catalog,
	"tool": {"name": name, "annotations": {}},
	"arguments": args,
}

visible(principal) := tools if {
	tools := authz.visible_tools with input as list_input(principal)
}

update(org) := {"organization_id": org, "kr_id": "kr-1", "value": 42}

# Visibility.

test_member_without_custom_scopes_sees_nothing if {
	visible(member(["openid", "email", "profile"])) == set()
}

test_read_okrs_shows_list_and_update if {
	visible(reader) == {"list_okrs", "update_kr"}
}

test_manage_krs_alone_shows_update if {
	visible(stepped_up) == {"update_kr"}
}

test_scopes_add_up if {
	visible(manager) == {"list_okrs", "update_kr"}
}

test_scope_tools_come_from_data if {
	got := authz.visible_tools with input as list_input(reader)
		with data.scope_tools as {"read:okrs": ["list_okrs"], "manage:krs": ["update_kr"]}
	got == {"list_okrs"}
}

test_token_without_organization_sees_nothing if {
	visible(object.union(manager, {"org_id": ""})) == set()
}

test_anonymous_sees_nothing if {
	visible(object.union(anonymous, {"scopes": ["read:okrs"], "org_id": acme})) == set()
}

test_other_providers_see_nothing if {
	every provider in ["auth0", "workos", "oidc", ""] {
		visible(object.union(manager, {"provider": provider})) == set()
	}
}

test_providers_come_from_data if {
	got := authz.visible_tools with input as list_input(object.union(reader, {"provider": "oidc"}))
		with data.providers as ["stytch", "oidc"]
	got == {"list_okrs", "update_kr"}
}

test_roles_and_permissions_are_not_scopes if {
	visible(object.union(member(["openid"]), {"roles": ["read:okrs"], "permissions": ["manage:krs"]})) == set()
}

test_only_catalog_tools_are_visible if {
	got := authz.visible_tools with input as object.union(list_input(manager), {"tools": [catalog[2]]})
	got == set()
}

# A catalog of 1000 tools, 997 of them granted by no scope.
big_catalog := array.concat(catalog, [{"name": sprintf("tool_%d", [i]), "description": "", "annotations": {}} |
	some i in numbers.range(1, 997)
])

test_visible_tools_with_1000_tool_catalog if {
	got := authz.visible_tools with input as object.union(list_input(reader), {"tools": big_catalog})
	got == {"list_okrs", "update_kr"}
	inp := object.union(call_input(manager, "update_kr", update(acme)), {"tools": big_catalog})
	authz.allow with input as inp
}

# Calls: scopes.

test_reader_lists_okrs if {
	inp := call_input(reader, "list_okrs", {"organization_id": acme})
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_reader_updating_kr_asks_for_step_up if {
	inp := call_input(reader, "update_kr", update(acme))
	not authz.allow with input as inp
	authz.required_scopes == {"manage:krs"} with input as inp
	authz.reason == `tool "update_kr" requires scope manage:krs` with input as inp
}

test_manager_updates_kr if {
	inp := call_input(manager, "update_kr", update(acme))
	authz.allow with input as inp
	not authz.reason with input as inp
}

test_step_up_token_with_challenged_scope_alone_is_enough if {
	authz.allow with input as call_input(stepped_up, "update_kr", update(acme))
}

test_required_scopes_names_every_call_scope if {
	scopes := {"update_kr": ["manage:krs", "read:okrs", "audit:write"]}
	inp := call_input(manager, "update_kr", update(acme))
	not authz.allow with input as inp with data.call_scopes as scopes
	authz.required_scopes == {"manage:krs", "read:okrs", "audit:write"} with input as inp with data.call_scopes as scopes
	authz.reason == `tool "update_kr" requires scope audit:write` with input as inp with data.call_scopes as scopes
	two := call_input(stepped_up, "update_kr", update(acme))
	authz.reason == `tool "update_kr" requires scopes audit:write, read:okrs` with input as two with data.call_scopes as scopes
}

# Calls: the caller's organisation.

test_call_naming_another_organization_denied if {
	inp := call_input(manager, "update_kr", update(globex))
	not authz.allow with input as inp
	authz.reason == sprintf("argument %q must be your organization %q", ["organization_id", acme]) with input as inp
	not authz.required_scopes with input as inp
}

test_call_without_organization_argument_allowed if {
	authz.allow with input as call_input(reader, "list_okrs", {})
	authz.allow with input as object.remove(call_input(reader, "list_okrs", {}), ["arguments"])
}

test_organization_argument_of_another_type_denied if {
	every value in [null, 7, [acme], {"id": acme}, ""] {
		not authz.allow with input as call_input(manager, "update_kr", update(value))
	}
}

test_nested_organization_argument_checked if {
	args := {"filter": {"organization_id": globex}, "items": [{"organization_id": acme}, {"organization_id": globex}]}
	inp := call_input(reader, "list_okrs", args)
	not authz.allow with input as inp
	authz.reason == concat("; ", [
		sprintf("argument %q must be your organization %q", ["filter.organization_id", acme]),
		sprintf("argument %q must be your organization %q", ["items.1.organization_id", acme]),
	]) with input as inp
	nested_ok := {"filter": {"organization_id": acme}, "items": [{"organization_id": acme}]}
	authz.allow with input as call_input(reader, "list_okrs", nested_ok)
}

test_organization_is_checked_before_scopes if {
	# No step-up would make this call succeed, so no challenge either.
	inp := call_input(reader, "update_kr", update(globex))
	not authz.allow with input as inp
	authz.reason == sprintf("argument %q must be your organization %q", ["organization_id", acme]) with input as inp
	not authz.required_scopes with input as inp
}

test_organization_arguments_come_from_data if {
	args := {"org": globex, "organization_id": globex}
	inp := call_input(reader, "list_okrs", args)
	authz.reason == sprintf("argument %q must be your organization %q", ["org", acme]) with input as inp
		with data.organization_arguments as ["org"]
	authz.allow with input as inp with data.organization_arguments as []
}

# Calls: tools that are not visible.

test_hidden_tool_call_not_available if {
	inp := call_input(stepped_up, "list_okrs", {})
	not authz.allow with input as inp
	authz.reason == `tool "list_okrs" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_from_another_provider_not_available if {
	inp := call_input(object.union(manager, {"provider": "oidc"}), "update_kr", update(globex))
	authz.reason == `tool "update_kr" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_of_unknown_tool_not_available if {
	inp := call_input(manager, "delete_okr", {})
	not authz.allow with input as inp
	authz.reason == `tool "delete_okr" is not available` with input as inp
	missing := object.remove(call_input(manager, "list_okrs", {}), ["tool"])
	authz.reason == `tool "" is not available` with input as missing
}

test_allow_is_false_outside_tools_call if {
	inp := object.union(call_input(manager, "list_okrs", {}), {"action": "tools/list"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_default_data_keeps_step_up_tools_visible if {
	# A client that steps up may get a token with the challenged scopes
	# alone: each call scope must itself show its tool.
	every name, scopes in data.call_scopes {
		every s in scopes {
			name in data.scope_tools[s]
		}
	}
}
