package mcp.authz_test

import data.mcp.authz

# Fixtures.

user := {
	"sub": "user-1",
	"iss": "https://issuer.example/",
	"client_id": "client-1",
	"provider": "auth0",
	"org_id": "org-1",
	"scopes": [],
	"permissions": [],
	"roles": [],
	"claims": {},
}

anonymous := object.union(user, {
	"sub": "",
	"iss": "",
	"client_id": "",
	"provider": "anonymous",
	"org_id": "",
})

catalog := [
	{"name": "add", "description": "Add two numbers", "annotations": {}, "server": "builtin"},
	{"name": "whoami", "description": "Who am I", "annotations": {}, "server": "builtin"},
	{"name": "image_generation", "description": "Generate an image", "annotations": {}, "server": "builtin"},
	{"name": "no_rule", "description": "A tool with no rule", "annotations": {}, "server": "builtin"},
]

# The default data with extra tools for the any_of, anonymous and argument tests.
extra_rules := object.union(data.tool_rules, {
	"by_scope": {"any_of": {"scopes": ["reports:read"]}},
	"by_role": {"any_of": {"roles": ["auditor"]}},
	"empty_lists": {"any_of": {"permissions": [], "scopes": [], "roles": []}},
	"typo_key": {"any_of": {"permission": ["image_generation"]}},
	"null_any_of": {"any_of": null},
	"public": {"anonymous": true, "any_of": {"permissions": ["nobody-has-this"]}},
	"public_with_scope": {"anonymous": true, "call_scopes": ["public:call"]},
	"anonymous_false": {"anonymous": false},
	"multi_scope": {"call_scopes": ["a:write", "b:write", "c:write"]},
	"resize": {"arguments": {
		"width": {"minimum": 1, "maximum": 4096},
		"label": {"max_length": 5, "required": true},
	}},
})

extra_catalog := array.concat(catalog, [{"name": name, "description": "", "annotations": {}} |
	some name in [
		"by_scope", "by_role", "empty_lists", "typo_key", "null_any_of", "public",
		"public_with_scope", "anonymous_false", "multi_scope", "resize",
	]
])

list_input(principal) := {
	"principal": principal,
	"action": "tools/list",
	"tools": catalog,
}

call_input(principal, name, args) := {
	"principal": principal,
	"action": "tools/call",
	"tools": catalog,
	"tool": {"name": name, "annotations": {}},
	"arguments": args,
}

extra_list_input(principal) := object.union(list_input(principal), {"tools": extra_catalog})

extra_call_input(principal, name, args) := object.union(call_input(principal, name, args), {"tools": extra_catalog})

visible(principal) := tools if {
	tools := authz.visible_tools with input as list_input(principal)
}

extra_visible(principal) := tools if {
	tools := authz.visible_tools with input as extra_list_input(principal)
		with data.tool_rules as extra_rules
}

with_permissions(p) := object.union(user, {"permissions": p})

with_scopes(s) := object.union(user, {"scopes": s})

with_roles(r) := object.union(user, {"roles": r})

image_user := object.union(user, {"permissions": ["image_generation"], "scopes": ["images:write"]})

big_rule(i) := {"any_of": {"permissions": ["big"]}} if i % 10 == 0

else := {}

repeat(s, n) := concat("", [s | some _ in numbers.range(1, n)])

# Visibility.

test_authenticated_principal_sees_only_open_tools if {
	visible(user) == {"add", "whoami"}
}

test_every_authenticated_provider_sees_open_tools if {
	every provider in ["auth0", "workos", "stytch", "oidc"] {
		visible(object.union(user, {"provider": provider})) == {"add", "whoami"}
	}
}

test_permission_grants_image_generation if {
	visible(with_permissions(["image_generation"])) == {"add", "whoami", "image_generation"}
}

test_unrelated_permission_grants_nothing_more if {
	visible(with_permissions(["other"])) == {"add", "whoami"}
}

test_role_mapped_through_role_permissions_grants_image_generation if {
	visible(with_roles(["image-creator"])) == {"add", "whoami", "image_generation"}
	visible(with_roles(["admin"])) == {"add", "whoami", "image_generation"}
}

test_unmapped_role_grants_nothing_more if {
	visible(with_roles(["viewer"])) == {"add", "whoami"}
}

test_role_permissions_are_read_from_data if {
	rp := {"artist": ["image_generation"]}
	got := authz.visible_tools with input as list_input(with_roles(["artist"]))
		with data.role_permissions as rp
	got == {"add", "whoami", "image_generation"}
	got_admin := authz.visible_tools with input as list_input(with_roles(["admin"]))
		with data.role_permissions as rp
	got_admin == {"add", "whoami"}
}

test_scope_in_any_of_grants_visibility if {
	"by_scope" in extra_visible(with_scopes(["reports:read"]))
	not "by_scope" in extra_visible(user)
}

test_role_in_any_of_grants_visibility if {
	"by_role" in extra_visible(with_roles(["auditor"]))
	not "by_role" in extra_visible(user)
}

test_any_of_matches_any_one_of_its_lists if {
	rules := {"mixed": {"any_of": {"permissions": ["p"], "scopes": ["s"], "roles": ["r"]}}}
	tools := [{"name": "mixed", "description": "", "annotations": {}}]
	every principal in [with_permissions(["p"]), with_scopes(["s"]), with_roles(["r"])] {
		got := authz.visible_tools with input as object.union(list_input(principal), {"tools": tools})
			with data.tool_rules as rules
		got == {"mixed"}
	}
	none := authz.visible_tools with input as object.union(list_input(user), {"tools": tools})
		with data.tool_rules as rules
	none == set()
}

test_any_of_with_only_empty_lists_means_every_authenticated_principal if {
	"empty_lists" in extra_visible(user)
	"null_any_of" in extra_visible(user)
}

test_any_of_with_unknown_key_fails_closed if {
	not "typo_key" in extra_visible(with_permissions(["image_generation"]))
}

test_anonymous_sees_nothing_by_default if {
	visible(anonymous) == set()
}

test_anonymous_permissions_and_roles_are_ignored if {
	visible(object.union(anonymous, {"permissions": ["image_generation"], "roles": ["admin"]})) == set()
}

test_anonymous_sees_tool_marked_anonymous if {
	extra_visible(anonymous) == {"public", "public_with_scope"}
}

test_anonymous_sees_tool_marked_anonymous_in_default_data if {
	got := authz.visible_tools with input as list_input(anonymous)
		with data.tool_rules as object.union(data.tool_rules, {"whoami": {"anonymous": true}})
	got == {"whoami"}
}

test_tool_marked_anonymous_is_visible_to_authenticated_principals if {
	"public" in extra_visible(user)
	not "anonymous_false" in extra_visible(anonymous)
	"anonymous_false" in extra_visible(user)
}

test_empty_provider_is_treated_as_anonymous if {
	visible(object.union(user, {"provider": ""})) == set()
	extra_visible(object.union(user, {"provider": ""})) == {"public", "public_with_scope"}
}

test_missing_principal_is_treated_as_anonymous if {
	got := authz.visible_tools with input as {"action": "tools/list", "tools": catalog}
	got == set()
}

test_tool_not_in_catalog_is_not_visible_even_with_rule if {
	tools := [t | some t in catalog; t.name != "whoami"]
	got := authz.visible_tools with input as object.union(list_input(user), {"tools": tools})
	got == {"add"}
}

test_tool_without_rule_is_not_visible if {
	not "no_rule" in visible(with_permissions(["image_generation"]))
	not "no_rule" in extra_visible(with_scopes(["reports:read"]))
}

test_empty_catalog_shows_nothing if {
	got := authz.visible_tools with input as object.union(list_input(user), {"tools": []})
	got == set()
}

test_no_tool_rules_shows_nothing if {
	got := authz.visible_tools with input as list_input(image_user)
		with data.tool_rules as {}
	got == set()
}

# A catalog of 1000 tools: add, whoami, image_generation and 997 without rules.
big_catalog := array.concat(catalog_without_no_rule, [{"name": sprintf("tool_%d", [i]), "description": "", "annotations": {}} |
	some i in numbers.range(1, 997)
])

catalog_without_no_rule := [t | some t in catalog; t.name != "no_rule"]

test_visible_tools_with_1000_tool_catalog if {
	count(big_catalog) == 1000
	got := authz.visible_tools with input as object.union(list_input(user), {"tools": big_catalog})
	got == {"add", "whoami"}
	got_image := authz.visible_tools with input as object.union(list_input(image_user), {"tools": big_catalog})
	got_image == {"add", "whoami", "image_generation"}
	inp := object.union(call_input(image_user, "image_generation", {"prompt": "a cat"}), {"tools": big_catalog})
	authz.allow with input as inp
}

test_visible_tools_with_1000_tool_catalog_and_500_rules if {
	# Rules for 500 tools, tool_500 to tool_1498 (even numbers), so half of them
	# are not in the catalog; every tenth one needs the permission "big".
	big_rules := {sprintf("tool_%d", [i]): big_rule(i) |
		some i in numbers.range(500, 1499)
		i % 2 == 0
	}
	count(big_rules) == 500
	got := authz.visible_tools with input as object.union(list_input(user), {"tools": big_catalog})
		with data.tool_rules as big_rules
	got == {sprintf("tool_%d", [i]) | some i in numbers.range(500, 997); i % 2 == 0; i % 10 != 0}
	count(got) == 199
}

# Calls: scopes.

test_call_allowed_with_scope_images_write if {
	inp := call_input(image_user, "image_generation", {"prompt": "a cat"})
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_call_allowed_through_role_with_scope if {
	principal := object.union(user, {"roles": ["image-creator"], "scopes": ["images:write"]})
	authz.allow with input as call_input(principal, "image_generation", {"prompt": "a cat"})
}

test_call_of_open_tool_allowed if {
	inp := call_input(user, "add", {"a": 1, "b": 2})
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_call_without_scope_denied_with_required_scopes if {
	inp := call_input(with_permissions(["image_generation"]), "image_generation", {"prompt": "a cat"})
	not authz.allow with input as inp
	authz.required_scopes == {"images:write"} with input as inp
	authz.reason == `tool "image_generation" requires scope images:write` with input as inp
}

test_required_scopes_is_every_call_scope_when_one_is_missing if {
	inp := extra_call_input(with_scopes(["a:write", "c:write"]), "multi_scope", {})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.required_scopes == {"a:write", "b:write", "c:write"} with input as inp with data.tool_rules as extra_rules
	authz.reason == `tool "multi_scope" requires scope b:write` with input as inp with data.tool_rules as extra_rules
}

test_reason_names_every_missing_scope if {
	inp := extra_call_input(with_scopes(["b:write"]), "multi_scope", {})
	authz.reason == `tool "multi_scope" requires scopes a:write, c:write` with input as inp with data.tool_rules as extra_rules
	authz.required_scopes == {"a:write", "b:write", "c:write"} with input as inp with data.tool_rules as extra_rules
}

test_call_with_every_scope_allowed if {
	inp := extra_call_input(with_scopes(["a:write", "b:write", "c:write"]), "multi_scope", {})
	authz.allow with input as inp with data.tool_rules as extra_rules
}

test_anonymous_call_of_public_tool if {
	authz.allow with input as extra_call_input(anonymous, "public", {}) with data.tool_rules as extra_rules
	inp := extra_call_input(anonymous, "public_with_scope", {})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.required_scopes == {"public:call"} with input as inp with data.tool_rules as extra_rules
}

# Calls: tools that are not visible.

test_hidden_tool_call_denied_as_not_available if {
	inp := call_input(user, "image_generation", {"prompt": "a cat"})
	not authz.allow with input as inp
	authz.reason == `tool "image_generation" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_of_tool_without_rule_denied_as_not_available if {
	inp := call_input(image_user, "no_rule", {})
	not authz.allow with input as inp
	authz.reason == `tool "no_rule" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_of_tool_missing_from_catalog_denied_as_not_available if {
	inp := object.union(call_input(user, "add", {}), {"tools": [t | some t in catalog; t.name != "add"]})
	not authz.allow with input as inp
	authz.reason == `tool "add" is not available` with input as inp
}

test_anonymous_call_denied_as_not_available if {
	inp := call_input(anonymous, "add", {"a": 1, "b": 2})
	not authz.allow with input as inp
	authz.reason == `tool "add" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_without_tool_denied if {
	inp := object.remove(call_input(user, "add", {}), ["tool"])
	not authz.allow with input as inp
	authz.reason == `tool "" is not available` with input as inp
}

# Calls: arguments.

test_prompt_longer_than_max_length_denied if {
	inp := call_input(image_user, "image_generation", {"prompt": repeat("a", 1001)})
	not authz.allow with input as inp
	authz.reason == `argument "prompt" is longer than 1000 characters` with input as inp
	not authz.required_scopes with input as inp
}

test_prompt_at_max_length_allowed if {
	authz.allow with input as call_input(image_user, "image_generation", {"prompt": repeat("a", 1000)})
}

test_max_length_counts_characters_not_bytes if {
	authz.allow with input as call_input(image_user, "image_generation", {"prompt": repeat("é", 1000)})
	not authz.allow with input as call_input(image_user, "image_generation", {"prompt": repeat("é", 1001)})
}

test_optional_argument_may_be_absent_or_null if {
	authz.allow with input as call_input(image_user, "image_generation", {})
	authz.allow with input as call_input(image_user, "image_generation", {"prompt": null})
	authz.allow with input as object.remove(call_input(image_user, "image_generation", {}), ["arguments"])
}

test_max_length_argument_that_is_not_a_string_denied if {
	inp := call_input(image_user, "image_generation", {"prompt": [repeat("a", 2000)]})
	not authz.allow with input as inp
	authz.reason == `argument "prompt" must be a string` with input as inp
}

test_argument_below_minimum_denied if {
	inp := extra_call_input(user, "resize", {"label": "x", "width": 0})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.reason == `argument "width" is less than 1` with input as inp with data.tool_rules as extra_rules
	not authz.required_scopes with input as inp with data.tool_rules as extra_rules
}

test_argument_above_maximum_denied if {
	inp := extra_call_input(user, "resize", {"label": "x", "width": 4096.5})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.reason == `argument "width" is greater than 4096` with input as inp with data.tool_rules as extra_rules
}

test_argument_at_bounds_allowed if {
	every width in [1, 4096] {
		authz.allow with input as extra_call_input(user, "resize", {"label": "x", "width": width})
			with data.tool_rules as extra_rules
	}
}

test_numeric_argument_that_is_not_a_number_denied if {
	inp := extra_call_input(user, "resize", {"label": "x", "width": "0"})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.reason == `argument "width" must be a number` with input as inp with data.tool_rules as extra_rules
}

test_required_argument_missing_denied if {
	inp := extra_call_input(user, "resize", {"width": 10})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.reason == `argument "label" is required` with input as inp with data.tool_rules as extra_rules
	null_inp := extra_call_input(user, "resize", {"width": 10, "label": null})
	authz.reason == `argument "label" is required` with input as null_inp with data.tool_rules as extra_rules
}

test_required_argument_present_allowed if {
	authz.allow with input as extra_call_input(user, "resize", {"label": "ok"}) with data.tool_rules as extra_rules
}

test_multiple_argument_violations_sorted_and_joined if {
	inp := extra_call_input(user, "resize", {"label": "too long", "width": 5000})
	not authz.allow with input as inp with data.tool_rules as extra_rules
	authz.reason == `argument "label" is longer than 5 characters; argument "width" is greater than 4096` with input as inp
		with data.tool_rules as extra_rules
	not authz.required_scopes with input as inp with data.tool_rules as extra_rules
}

test_missing_scope_reported_before_argument_violations if {
	principal := with_permissions(["image_generation"])
	inp := call_input(principal, "image_generation", {"prompt": repeat("a", 1001)})
	not authz.allow with input as inp
	authz.reason == `tool "image_generation" requires scope images:write` with input as inp
	authz.required_scopes == {"images:write"} with input as inp
}

# Actions.

test_allow_false_for_tools_list if {
	inp := object.union(call_input(image_user, "image_generation", {"prompt": "a cat"}), {"action": "tools/list"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_allow_false_for_unknown_action if {
	inp := object.union(call_input(image_user, "add", {}), {"action": "tools/delete"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
}

test_visible_tools_does_not_depend_on_action if {
	inp := call_input(with_permissions(["image_generation"]), "add", {})
	authz.visible_tools == {"add", "whoami", "image_generation"} with input as inp
}

# Mistakes in data.tool_rules.

test_default_data_has_no_rule_errors if {
	count(authz.rule_errors) == 0
}

test_rule_errors_lists_each_mistake if {
	rules := {
		"ok": {"any_of": {"roles": ["r"]}, "anonymous": false, "call_scopes": ["s"], "arguments": {"a": {"max_length": 1, "minimum": 0, "maximum": 2, "required": true}}},
		"not_object": "call_scopes",
		"typo": {"call_scope": ["images:write"]},
		"anonymous": {"anonymous": "true"},
		"any_of_list": {"any_of": ["permissions"]},
		"any_of_keys": {"any_of": {"permission": ["p"], "scopes": "s"}},
		"scopes_string": {"call_scopes": "images:write"},
		"scopes_numbers": {"call_scopes": [1]},
		"arguments_list": {"arguments": [{"max_length": 1}]},
		"constraints": {"arguments": {
			"a": {"maxLength": 10},
			"b": {"max_length": "10", "minimum": "1", "maximum": null, "required": "yes"},
		}},
	}
	got := authz.rule_errors with data.tool_rules as rules
	got == {
		"not_object": {"the rule must be an object"},
		"typo": {`unknown key "call_scope"`},
		"anonymous": {"anonymous must be a boolean"},
		"any_of_list": {"any_of must be an object"},
		"any_of_keys": {"unknown key any_of.permission", "any_of.scopes must be an array of strings"},
		"scopes_string": {"call_scopes must be an array of strings"},
		"scopes_numbers": {"call_scopes must be an array of strings"},
		"arguments_list": {"arguments must be an object"},
		"constraints": {
			"unknown key arguments.a.maxLength",
			"arguments.b.max_length must be a number",
			"arguments.b.minimum must be a number",
			"arguments.b.maximum must be a number",
			"arguments.b.required must be a boolean",
		},
	}
}

test_arguments_entry_that_is_not_an_object_is_a_rule_error if {
	got := authz.rule_errors with data.tool_rules as {"t": {"arguments": {"a": 5}}}
	got == {"t": {"arguments.a must be an object"}}
}

test_misconfigured_rule_denies_call if {
	rules := {"add": {"call_scopes": "images:write"}}
	inp := call_input(image_user, "add", {})
	"add" in authz.visible_tools with input as inp with data.tool_rules as rules
	not authz.allow with input as inp with data.tool_rules as rules
	authz.reason == `tool "add" is misconfigured` with input as inp with data.tool_rules as rules
	not authz.required_scopes with input as inp with data.tool_rules as rules
}

test_misconfigured_rule_is_reported_before_missing_scopes if {
	rules := {"add": {"call_scopes": ["a:write"], "arguments": {"x": {"maxLength": 1}}}}
	inp := call_input(user, "add", {"x": "long"})
	not authz.allow with input as inp with data.tool_rules as rules
	authz.reason == `tool "add" is misconfigured` with input as inp with data.tool_rules as rules
	not authz.required_scopes with input as inp with data.tool_rules as rules
}

test_misconfigured_any_of_hides_tool if {
	rules := {"add": {"any_of": {"permissions": "image_generation"}}}
	not "add" in authz.visible_tools with input as list_input(with_permissions(["image_generation"]))
		with data.tool_rules as rules
}

# Upstream tools: server_rules and annotation-limited rules.

# The builtin catalog and three tools of the upstream "fs", as the gateway
# lists them (prefixed).
fs_catalog := array.concat(catalog, [
	{"name": "fs_read_text_file", "description": "", "annotations": {"readOnlyHint": true}, "server": "fs"},
	{"name": "fs_write_file", "description": "", "annotations": {"readOnlyHint": false, "destructiveHint": true}, "server": "fs"},
	{"name": "fs_no_hint", "description": "", "annotations": {}, "server": "fs"},
])

fs_tools := {"fs_read_text_file", "fs_write_file", "fs_no_hint"}

# Readers see the read-only tools of fs, editors all of them; editors need
# fs:write to call through their rule.
readers_and_editors := {"fs": [
	{"any_of": {"roles": ["reader"]}, "annotations": {"readOnlyHint": true}},
	{"any_of": {"roles": ["editor"]}, "call_scopes": ["fs:write"]},
]}

fs_visible(principal, tool_rules, server_rules) := tools if {
	tools := authz.visible_tools with input as object.union(list_input(principal), {"tools": fs_catalog})
		with data.tool_rules as tool_rules
		with data.server_rules as server_rules
}

fs_call_input(principal, name, args) := object.union(call_input(principal, name, args), {
	"tools": fs_catalog,
	"tool": {"name": t.name, "annotations": t.annotations, "server": t.server},
}) if {
	some t in fs_catalog
	t.name == name
}

test_server_rule_applies_to_upstream_tools_without_tool_rule if {
	fs_visible(user, data.tool_rules, {"fs": {}}) == {"add", "whoami"} | fs_tools
	fs_visible(user, data.tool_rules, {"other": {}}) == {"add", "whoami"}
	fs_visible(user, data.tool_rules, {}) == {"add", "whoami"}
	fs_visible(anonymous, data.tool_rules, {"fs": {"anonymous": true}}) == fs_tools
}

test_tool_rule_wins_over_server_rule if {
	tool_rules := object.union(data.tool_rules, {"fs_write_file": {"any_of": {"roles": ["admin"]}, "call_scopes": ["fs:admin"]}})
	fs_visible(user, tool_rules, {"fs": {}}) == {"add", "whoami", "fs_read_text_file", "fs_no_hint"}
	"fs_write_file" in fs_visible(with_roles(["admin"]), tool_rules, {"fs": {"any_of": {"roles": ["nobody"]}}})
	inp := fs_call_input(with_roles(["admin"]), "fs_write_file", {})
	authz.required_scopes == {"fs:admin"} with input as inp with data.tool_rules as tool_rules
		with data.server_rules as {"fs": {"call_scopes": ["fs:other"]}}
}

test_tool_rule_of_false_still_wins_over_server_rule if {
	tool_rules := {"fs_write_file": false}
	not "fs_write_file" in fs_visible(user, tool_rules, {"fs": {}})
}

test_builtin_tools_never_take_a_server_rule if {
	fs_visible(image_user, {}, {"builtin": {}, "": {}}) == set()
	inp := object.union(call_input(user, "no_rule", {}), {"tool": {"name": "no_rule", "annotations": {}, "server": "builtin"}})
	authz.reason == `tool "no_rule" is not available` with input as inp with data.server_rules as {"builtin": {}}
}

test_tool_outside_the_catalog_never_takes_a_server_rule if {
	inp := object.union(call_input(user, "fs_gone", {}), {"tool": {"name": "fs_gone", "annotations": {}, "server": ""}})
	not authz.allow with input as inp with data.server_rules as {"": {}, "fs": {}}
	authz.reason == `tool "fs_gone" is not available` with input as inp with data.server_rules as {"": {}, "fs": {}}
}

test_readers_see_only_read_only_tools_editors_all if {
	reader := with_roles(["reader"])
	editor := with_roles(["editor"])
	fs_visible(reader, data.tool_rules, readers_and_editors) == {"add", "whoami", "fs_read_text_file"}
	fs_visible(editor, data.tool_rules, readers_and_editors) == {"add", "whoami"} | fs_tools
	fs_visible(user, data.tool_rules, readers_and_editors) == {"add", "whoami"}
	not "fs_write_file" in fs_visible(anonymous, data.tool_rules, readers_and_editors)
}

test_annotation_limit_needs_the_annotation_present_with_that_value if {
	writers := {"fs": {"annotations": {"readOnlyHint": false}}}
	fs_visible(user, {}, writers) == {"fs_write_file"}
	both := {"fs": {"annotations": {"readOnlyHint": false, "destructiveHint": true}}}
	fs_visible(user, {}, both) == {"fs_write_file"}
	mismatch := {"fs": {"annotations": {"readOnlyHint": false, "destructiveHint": false}}}
	fs_visible(user, {}, mismatch) == set()
	any_tool := {"fs": {"annotations": {}}}
	fs_visible(user, {}, any_tool) == fs_tools
}

test_tool_rule_may_be_limited_by_annotations if {
	tool_rules := {
		"fs_read_text_file": {"annotations": {"readOnlyHint": true}},
		"fs_write_file": {"annotations": {"readOnlyHint": true}},
	}
	fs_visible(user, tool_rules, {}) == {"fs_read_text_file"}
}

test_call_scopes_of_a_server_rule if {
	server_rules := {"fs": {"call_scopes": ["fs:call"]}}
	inp := fs_call_input(user, "fs_read_text_file", {})
	not authz.allow with input as inp with data.server_rules as server_rules
	authz.required_scopes == {"fs:call"} with input as inp with data.server_rules as server_rules
	authz.reason == `tool "fs_read_text_file" requires scope fs:call` with input as inp with data.server_rules as server_rules
	authz.allow with input as fs_call_input(with_scopes(["fs:call"]), "fs_read_text_file", {})
		with data.server_rules as server_rules
}

test_arguments_of_a_server_rule if {
	server_rules := {"fs": {"arguments": {"path": {"required": true, "max_length": 5}}}}
	inp := fs_call_input(user, "fs_read_text_file", {"path": "/srv/share/long"})
	authz.reason == `argument "path" is longer than 5 characters` with input as inp with data.server_rules as server_rules
	authz.allow with input as fs_call_input(user, "fs_read_text_file", {"path": "/a"}) with data.server_rules as server_rules
}

test_call_uses_the_first_rule_that_made_the_tool_visible if {
	reader_editor := with_roles(["reader", "editor"])
	editor := with_roles(["editor"])

	# Through the readers' rule: no call scopes.
	authz.allow with input as fs_call_input(reader_editor, "fs_read_text_file", {})
		with data.server_rules as readers_and_editors

	# Only the editors' rule makes these visible: it needs fs:write.
	every inp in [fs_call_input(editor, "fs_read_text_file", {}), fs_call_input(reader_editor, "fs_write_file", {})] {
		not authz.allow with input as inp with data.server_rules as readers_and_editors
		authz.required_scopes == {"fs:write"} with input as inp with data.server_rules as readers_and_editors
	}
	authz.allow with input as fs_call_input(object.union(editor, {"scopes": ["fs:write"]}), "fs_write_file", {})
		with data.server_rules as readers_and_editors
}

test_reader_call_of_a_write_tool_is_not_available if {
	inp := fs_call_input(with_roles(["reader"]), "fs_write_file", {})
	not authz.allow with input as inp with data.server_rules as readers_and_editors
	authz.reason == `tool "fs_write_file" is not available` with input as inp with data.server_rules as readers_and_editors
	not authz.required_scopes with input as inp with data.server_rules as readers_and_editors
}

test_empty_rule_list_shows_nothing if {
	fs_visible(user, {}, {"fs": []}) == set()
}

test_misconfigured_server_rule_denies_calls if {
	every server_rules in [
		{"fs": {"call_scope": ["fs:write"]}},
		{"fs": [{}, {"any_of": {"roles": "editor"}}]},
	] {
		inp := fs_call_input(user, "fs_read_text_file", {})
		"fs_read_text_file" in authz.visible_tools with input as inp with data.server_rules as server_rules
		not authz.allow with input as inp with data.server_rules as server_rules
		authz.reason == `tool "fs_read_text_file" is misconfigured` with input as inp with data.server_rules as server_rules
	}
}

test_annotations_that_are_not_an_object_apply_to_no_tool if {
	every limits in ["readOnlyHint", ["readOnlyHint"], null, true] {
		fs_visible(user, {}, {"fs": {"annotations": limits}}) == set()
	}
}

test_rule_errors_cover_server_rules_and_annotations if {
	server_rules := {
		"ok": [{"annotations": {"readOnlyHint": true}}, {}],
		"fs": {"call_scope": ["fs:write"], "annotations": "readOnlyHint"},
		"list": [{}, {"annotation": {}}, 5],
	}
	got := authz.rule_errors with data.server_rules as server_rules
		with data.tool_rules as {"add": {"annotations": ["readOnlyHint"]}}
	got == {
		"add": {"annotations must be an object"},
		"server_rules.fs": {`unknown key "call_scope"`, "annotations must be an object"},
		"server_rules.list": {`rule 1: unknown key "annotation"`, "rule 2: the rule must be an object"},
	}
}

# Rate limits: a rule's limits, keyed by where the rule lives and by whom
# they count.

limited_rules := object.union(data.tool_rules, {"add": {"limits": [
	{"each": "principal", "rate": 10, "per": "1m"},
	{"each": "organisation", "rate": 500, "per": "24h"},
	{"each": "client", "rate": 100, "per": "1h"},
]}})

test_tool_rule_limits_are_keyed_by_tool_and_subject if {
	got := authz.limits with input as call_input(user, "add", {}) with data.tool_rules as limited_rules
	got == {
		{"key": `["tool","add","principal","https://issuer.example/","user-1"]`, "rate": 10, "per": "1m", "name": "add: 10 calls per 1m for each principal"},
		{"key": `["tool","add","organisation","org-1"]`, "rate": 500, "per": "24h", "name": "add: 500 calls per 24h for each organisation"},
		{"key": `["tool","add","client","client-1"]`, "rate": 100, "per": "1h", "name": "add: 100 calls per 1h for each client"},
	}
	authz.allow with input as call_input(user, "add", {}) with data.tool_rules as limited_rules
}

test_limits_without_org_or_client_count_the_principal if {
	loner := object.union(user, {"org_id": "", "client_id": ""})
	keys := {l.key | some l in authz.limits with input as call_input(loner, "add", {}) with data.tool_rules as limited_rules}
	keys == {`["tool","add","principal","https://issuer.example/","user-1"]`}
}

test_server_rule_limits_count_the_whole_upstream if {
	rules := {"fs": {"limits": [{"each": "organisation", "rate": 5, "per": "1h"}]}}
	read := authz.limits with input as fs_call_input(user, "fs_read_text_file", {}) with data.server_rules as rules
	write := authz.limits with input as fs_call_input(user, "fs_write_file", {}) with data.server_rules as rules
	read == write
	read == {{"key": `["server","fs","organisation","org-1"]`, "rate": 5, "per": "1h", "name": "upstream fs: 5 calls per 1h for each organisation"}}
}

test_no_limits_without_a_limits_key if {
	count(authz.limits) == 0 with input as call_input(image_user, "image_generation", {"prompt": "a cat"})
}

test_limit_mistakes_are_rule_errors if {
	rules := {
		"a": {"limits": {"each": "principal"}},
		"b": {"limits": [
			"ten a minute",
			{"each": "organization", "rate": 0, "per": "a minute"},
			{"each": "client", "rate": 1.5, "per": "1m", "burst": 2},
			{"rate": 10, "per": 60},
		]},
	}
	got := authz.rule_errors with data.tool_rules as rules
	got == {
		"a": {"limits must be an array"},
		"b": {
			"limits[0] must be an object",
			"limits[1].each must be one of principal, organisation, client",
			"limits[1].rate must be an integer from 1 to 1000000000",
			`limits[1].per must be a duration such as "1m" or "24h"`,
			"limits[2].rate must be an integer from 1 to 1000000000",
			"unknown key limits[2].burst",
			"limits[3].each must be one of principal, organisation, client",
			`limits[3].per must be a duration such as "1m" or "24h"`,
		},
	}
	not authz.allow with input as call_input(user, "add", {}) with data.tool_rules as {"add": {"limits": [{"each": "principal", "rate": 10, "per": "1 minute"}]}}
	authz.reason == `tool "add" is misconfigured` with input as call_input(user, "add", {}) with data.tool_rules as {"add": {"limits": [{"each": "principal", "rate": 10, "per": "1 minute"}]}}
}
