package mcp.authz_test

import data.mcp.authz

# Fixtures: an Auth0 principal and toolgate's catalog with its real
# annotations (add and whoami are read-only, image_generation is not).

user := {
	"sub": "auth0|123456",
	"iss": "https://example.us.auth0.com/",
	"client_id": "my_client_id",
	"provider": "auth0",
	"org_id": "",
	"scopes": ["openid"],
	"permissions": [],
	"roles": [],
	"claims": {},
}

anonymous := object.union(user, {
	"sub": "",
	"iss": "",
	"client_id": "",
	"provider": "anonymous",
	"scopes": [],
})

annotations(read_only) := {
	"title": "",
	"readOnlyHint": read_only,
	"destructiveHint": false,
	"idempotentHint": true,
	"openWorldHint": false,
}

catalog := [
	{"name": "add", "description": "Add two numbers", "annotations": annotations(true)},
	{"name": "image_generation", "description": "Generate an image", "annotations": annotations(false)},
	{"name": "whoami", "description": "Who am I", "annotations": annotations(true)},
]

# A larger fictional catalog: a write tool without further permissions, a
# tool without annotations and one whose hint is not the boolean true.
extra_catalog := array.concat(catalog, [
	{"name": "save_note", "description": "", "annotations": annotations(false)},
	{"name": "no_annotations", "description": "", "annotations": {}},
	{"name": "string_hint", "description": "", "annotations": {"readOnlyHint": "true"}},
])

list_input(principal) := {"principal": principal, "action": "tools/list", "tools": catalog}

call_input(principal, name, args) := {
	"principal": principal,
	"action": "tools/call",
	"tools": catalog,
	"tool": {"name": name, "annotations": object.get({t.name: t.annotations | some t in catalog}, name, {})},
	"arguments": args,
}

visible(principal) := tools if {
	tools := authz.visible_tools with input as list_input(principal)
}

extra_visible(principal) := tools if {
	tools := authz.visible_tools with input as object.union(list_input(principal), {"tools": extra_catalog})
}

with_permissions(p) := object.union(user, {"permissions": p})

reader := with_permissions(["tools:read"])

writer := with_permissions(["tools:read", "tools:write"])

artist := with_permissions(["tools:read", "tools:write", "image_generation"])

# Step-up done: the token also carries the call scope images:write.
stepped_up_artist := object.union(artist, {"scopes": ["openid", "images:write"]})

# Visibility.

test_no_permission_sees_nothing if {
	visible(user) == set()
}

test_read_permission_shows_read_only_tools if {
	visible(reader) == {"add", "whoami"}
}

test_write_permission_alone_shows_only_write_tools if {
	extra_visible(with_permissions(["tools:write"])) == {"save_note", "no_annotations", "string_hint"}
}

test_read_and_write_permissions_show_both if {
	extra_visible(writer) == {"add", "whoami", "save_note", "no_annotations", "string_hint"}
}

test_tool_without_read_only_hint_needs_write_permission if {
	not "no_annotations" in extra_visible(reader)
	not "string_hint" in extra_visible(reader)
	"no_annotations" in extra_visible(with_permissions(["tools:write"]))
}

test_image_generation_needs_its_own_permission_and_write if {
	not "image_generation" in visible(writer)
	not "image_generation" in visible(with_permissions(["tools:read", "image_generation"]))
	visible(artist) == {"add", "whoami", "image_generation"}
}

test_tool_permissions_need_every_listed_permission if {
	got := authz.visible_tools with input as list_input(artist)
		with data.tool_permissions as {"image_generation": ["image_generation", "images:beta"]}
	got == {"add", "whoami"}
	got_all := authz.visible_tools with input as list_input(with_permissions(["tools:write", "image_generation", "images:beta"]))
		with data.tool_permissions as {"image_generation": ["image_generation", "images:beta"]}
	got_all == {"image_generation"}
}

test_scopes_are_not_permissions if {
	visible(object.union(user, {"scopes": ["tools:read", "tools:write", "image_generation"]})) == set()
}

test_permission_names_come_from_data if {
	got := authz.visible_tools with input as list_input(with_permissions(["read:tools"]))
		with data.access_permissions as {"read": "read:tools", "write": "write:tools"}
	got == {"add", "whoami"}
	old := authz.visible_tools with input as list_input(reader)
		with data.access_permissions as {"read": "read:tools", "write": "write:tools"}
	old == set()
}

test_anonymous_sees_nothing_whatever_it_holds if {
	visible(object.union(anonymous, {"permissions": ["tools:read", "tools:write", "image_generation"]})) == set()
}

test_empty_provider_is_treated_as_anonymous if {
	visible(object.union(artist, {"provider": ""})) == set()
}

test_permissions_count_whatever_the_issuer if {
	every provider in ["workos", "stytch", "oidc"] {
		visible(object.union(reader, {"provider": provider})) == {"add", "whoami"}
	}
}

test_missing_principal_sees_nothing if {
	got := authz.visible_tools with input as {"action": "tools/list", "tools": catalog}
	got == set()
}

test_only_catalog_tools_are_visible if {
	got := authz.visible_tools with input as object.union(list_input(artist), {"tools": [catalog[0]]})
	got == {"add"}
	empty := authz.visible_tools with input as object.union(list_input(artist), {"tools": []})
	empty == set()
}

# A catalog of 1000 tools: toolgate's three and 997 fictional ones, every
# third of them read-only.
big_catalog := array.concat(catalog, [{"name": sprintf("tool_%d", [i]), "description": "", "annotations": annotations((i % 3) == 0)} |
	some i in numbers.range(1, 997)
])

test_visible_tools_with_1000_tool_catalog if {
	count(big_catalog) == 1000
	got := authz.visible_tools with input as object.union(list_input(reader), {"tools": big_catalog})
	count(got) == 2 + 332
	got_all := authz.visible_tools with input as object.union(list_input(artist), {"tools": big_catalog})
	count(got_all) == 1000
	inp := object.union(call_input(stepped_up_artist, "image_generation", {"prompt": "a cat"}), {"tools": big_catalog})
	authz.allow with input as inp
}

# Calls.

test_reader_calls_read_only_tool if {
	inp := call_input(reader, "add", {"a": 1, "b": 2})
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_call_without_call_scope_asks_for_step_up if {
	inp := call_input(artist, "image_generation", {"prompt": "a cat"})
	not authz.allow with input as inp
	authz.required_scopes == {"images:write"} with input as inp
	authz.reason == `tool "image_generation" requires scope images:write` with input as inp
}

test_call_with_call_scope_allowed if {
	inp := call_input(stepped_up_artist, "image_generation", {"prompt": "a cat"})
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_call_scope_without_permissions_is_not_enough if {
	principal := object.union(writer, {"scopes": ["images:write"]})
	inp := call_input(principal, "image_generation", {"prompt": "a cat"})
	not authz.allow with input as inp
	authz.reason == `tool "image_generation" requires permission image_generation` with input as inp
	not authz.required_scopes with input as inp
}

test_required_scopes_names_every_call_scope if {
	scopes := {"image_generation": ["images:write", "images:hd"]}
	principal := object.union(artist, {"scopes": ["images:write"]})
	inp := call_input(principal, "image_generation", {"prompt": "a cat"})
	not authz.allow with input as inp with data.call_scopes as scopes
	authz.required_scopes == {"images:write", "images:hd"} with input as inp with data.call_scopes as scopes
	authz.reason == `tool "image_generation" requires scope images:hd` with input as inp with data.call_scopes as scopes
	none := call_input(artist, "image_generation", {"prompt": "a cat"})
	authz.reason == `tool "image_generation" requires scopes images:hd, images:write` with input as none
		with data.call_scopes as scopes
}

test_hidden_tool_call_names_missing_permissions if {
	inp := call_input(user, "image_generation", {"prompt": "a cat"})
	not authz.allow with input as inp
	authz.reason == `tool "image_generation" requires permissions image_generation, tools:write` with input as inp
	not authz.required_scopes with input as inp
	authz.reason == `tool "add" requires permission tools:read` with input as call_input(with_permissions(["tools:write"]), "add", {})
}

test_call_of_unknown_tool_not_available if {
	inp := call_input(artist, "no_such_tool", {})
	not authz.allow with input as inp
	authz.reason == `tool "no_such_tool" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_without_tool_not_available if {
	inp := object.remove(call_input(artist, "add", {}), ["tool"])
	not authz.allow with input as inp
	authz.reason == `tool "" is not available` with input as inp
}

test_anonymous_call_not_available if {
	inp := call_input(object.union(anonymous, {"permissions": ["tools:read"]}), "add", {})
	not authz.allow with input as inp
	authz.reason == `tool "add" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_allow_is_false_outside_tools_call if {
	inp := object.union(call_input(stepped_up_artist, "add", {}), {"action": "tools/list"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_visible_tools_is_the_same_for_a_call if {
	authz.visible_tools == {"add", "whoami", "image_generation"} with input as call_input(artist, "add", {})
}
