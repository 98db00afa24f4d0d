package mcp.authz_test

import data.mcp.authz

# Fixtures: principals with various scopes and toolgate's catalog. The
# default data: mcp:admin -> mcp:tools:call and images:admin; images:admin
# -> images:write -> images:read. add needs mcp:tools:call to call;
# image_generation needs images:read to see, mcp:tools:call and
# images:write to call.

with_scopes(scopes) := {
	"sub": "user-1",
	"iss": "https://issuer.example/",
	"client_id": "client-1",
	"provider": "oidc",
	"org_id": "",
	"scopes": scopes,
	"permissions": [],
	"roles": [],
	"claims": {},
}

user := with_scopes([])

anonymous := object.union(user, {"sub": "", "iss": "", "client_id": "", "provider": "anonymous"})

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

visible(scopes) := tools if {
	tools := authz.visible_tools with input as list_input(with_scopes(scopes))
}

image_call(scopes) := call_input(with_scopes(scopes), "image_generation")

# A deeper fictional hierarchy for the minimal-set tests: reports:admin ->
# reports:write -> reports:read, audit:read on its own, and root -> all.
reports_implies := {
	"root": ["reports:admin", "audit:read"],
	"reports:admin": ["reports:write"],
	"reports:write": ["reports:read"],
}

reports_tools := {"export": {"list": ["reports:read"], "call": ["reports:write", "reports:read", "audit:read"]}}

reports_catalog := [{"name": "export", "description": "", "annotations": {}}]

export_call(scopes) := object.union(call_input(with_scopes(scopes), "export"), {"tools": reports_catalog})

# Effective scopes.

test_scope_implies_chains if {
	got := authz.effective_scopes with input as list_input(with_scopes(["mcp:admin"]))
	got == {"mcp:admin", "mcp:tools:call", "images:admin", "images:write", "images:read"}
}

test_scope_without_implications_is_held_as_is if {
	got := authz.effective_scopes with input as list_input(with_scopes(["openid", "images:read"]))
	got == {"openid", "images:read"}
}

test_implications_do_not_go_upwards if {
	got := authz.effective_scopes with input as list_input(with_scopes(["images:write"]))
	got == {"images:write", "images:read"}
}

test_cyclic_implications_terminate if {
	got := authz.effective_scopes with input as list_input(with_scopes(["a"]))
		with data.scope_implies as {"a": ["b"], "b": ["a", "c"]}
	got == {"a", "b", "c"}
}

# Visibility.

test_authenticated_principal_sees_open_tools if {
	visible([]) == {"add", "whoami"}
}

test_list_scope_shows_image_generation if {
	visible(["images:read"]) == {"add", "whoami", "image_generation"}
}

test_broader_scope_implies_list_scope if {
	every scope in ["images:write", "images:admin", "mcp:admin"] {
		visible([scope]) == {"add", "whoami", "image_generation"}
	}
}

test_unrelated_scope_shows_nothing_more if {
	visible(["images"]) == {"add", "whoami"}
	visible(["mcp:tools:call"]) == {"add", "whoami"}
}

test_list_needs_every_listed_scope if {
	tools := {"add": {"list": ["a", "b"]}}
	got := authz.visible_tools with input as list_input(with_scopes(["a"])) with data.tools as tools
	got == set()
	got_both := authz.visible_tools with input as list_input(with_scopes(["a", "b"])) with data.tools as tools
	got_both == {"add"}
}

test_anonymous_sees_nothing if {
	got := authz.visible_tools with input as list_input(object.union(anonymous, {"scopes": ["mcp:admin"]}))
	got == set()
	missing := authz.visible_tools with input as {"action": "tools/list", "tools": catalog}
	missing == set()
}

test_tool_without_entry_is_not_visible if {
	got := authz.visible_tools with input as list_input(with_scopes(["mcp:admin"]))
		with data.tools as {"add": {}}
	got == {"add"}
}

test_only_catalog_tools_are_visible if {
	got := authz.visible_tools with input as object.union(list_input(with_scopes(["mcp:admin"])), {"tools": [catalog[1]]})
	got == {"image_generation"}
}

# A catalog of 300 tools and 150 rules, every other one needing images:read.
big_catalog := array.concat(catalog, [{"name": sprintf("tool_%d", [i]), "description": "", "annotations": {}} |
	some i in numbers.range(1, 297)
])

big_rule(i) := {"list": ["images:read"]} if i % 2 == 0

else := {}

test_visible_tools_with_300_tool_catalog if {
	tools := {sprintf("tool_%d", [i]): big_rule(i) | some i in numbers.range(1, 150)}
	got := authz.visible_tools with input as object.union(list_input(user), {"tools": big_catalog})
		with data.tools as tools
	count(got) == 75
	got_admin := authz.visible_tools with input as object.union(list_input(with_scopes(["images:admin"])), {"tools": big_catalog})
		with data.tools as tools
	count(got_admin) == 150
}

# Calls.

test_open_tool_call_allowed if {
	inp := call_input(user, "whoami")
	authz.allow with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

test_call_with_exact_scopes_allowed if {
	authz.allow with input as image_call(["mcp:tools:call", "images:write"])
}

test_call_with_broader_scope_allowed if {
	authz.allow with input as image_call(["mcp:tools:call", "images:admin"])
	authz.allow with input as image_call(["mcp:admin"])
	authz.allow with input as call_input(with_scopes(["mcp:admin"]), "add")
}

test_challenge_names_smallest_scope if {
	# The caller holds images:read; images:write is the smallest scope that
	# permits the call, not images:admin.
	inp := image_call(["images:read", "mcp:tools:call"])
	not authz.allow with input as inp
	authz.required_scopes == {"mcp:tools:call", "images:write"} with input as inp
	authz.reason == `tool "image_generation" requires scope images:write` with input as inp
}

test_challenge_carries_every_scope_the_call_needs if {
	# Two scopes missing: one challenge names both; images:read, needed to
	# see the tool, is covered by images:write.
	inp := image_call(["images:read"])
	authz.required_scopes == {"mcp:tools:call", "images:write"} with input as inp
	authz.reason == `tool "image_generation" requires scopes images:write, mcp:tools:call` with input as inp
}

test_challenge_includes_scopes_already_held if {
	# The caller holds images:admin (enough for images:write) but lacks
	# mcp:tools:call: the challenge still names images:write, so that a
	# token with the challenged scopes alone permits the call.
	inp := image_call(["images:admin"])
	not authz.allow with input as inp
	authz.required_scopes == {"mcp:tools:call", "images:write"} with input as inp
	authz.reason == `tool "image_generation" requires scope mcp:tools:call` with input as inp
	stepped_up := image_call(authz.required_scopes) with input as inp
	authz.allow with input as stepped_up
}

test_challenged_scopes_alone_permit_the_call if {
	every scopes in [["images:read"], ["images:write"], ["images:admin"], ["mcp:tools:call", "images:read"]] {
		challenge := authz.required_scopes with input as image_call(scopes)
		authz.allow with input as image_call(challenge)
	}
}

test_challenge_for_tool_with_one_call_scope if {
	inp := call_input(user, "add")
	not authz.allow with input as inp
	authz.required_scopes == {"mcp:tools:call"} with input as inp
	authz.reason == `tool "add" requires scope mcp:tools:call` with input as inp
}

test_minimal_set_drops_only_implied_requirements if {
	# export needs reports:read (list), reports:write and audit:read (call):
	# reports:write covers reports:read; root would cover all but is broader.
	inp := export_call(["reports:read"])
	got := authz.required_scopes with input as inp
		with data.scope_implies as reports_implies
		with data.tools as reports_tools
	got == {"reports:write", "audit:read"}
	authz.allow with input as export_call(["root"]) with data.scope_implies as reports_implies with data.tools as reports_tools
}

test_minimal_set_keeps_both_scopes_of_a_cycle if {
	implies := {"a": ["b"], "b": ["a"]}
	tools := {"add": {"call": ["a", "b"]}}
	got := authz.required_scopes with input as call_input(user, "add")
		with data.scope_implies as implies
		with data.tools as tools
	got == {"a", "b"}
	authz.allow with input as call_input(with_scopes(["a"]), "add") with data.scope_implies as implies with data.tools as tools
}

test_hidden_tool_call_not_available if {
	inp := image_call(["mcp:tools:call"])
	not authz.allow with input as inp
	authz.reason == `tool "image_generation" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_call_of_unknown_tool_not_available if {
	inp := call_input(with_scopes(["mcp:admin"]), "no_such_tool")
	authz.reason == `tool "no_such_tool" is not available` with input as inp
	missing := object.remove(inp, ["tool"])
	authz.reason == `tool "" is not available` with input as missing
}

test_anonymous_call_not_available if {
	inp := call_input(object.union(anonymous, {"scopes": ["mcp:admin"]}), "whoami")
	not authz.allow with input as inp
	authz.reason == `tool "whoami" is not available` with input as inp
	not authz.required_scopes with input as inp
}

test_allow_is_false_outside_tools_call if {
	inp := object.union(call_input(with_scopes(["mcp:admin"]), "add"), {"action": "tools/list"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
	not authz.required_scopes with input as inp
}

# Mistakes in the data.

test_default_data_has_no_errors if {
	count(authz.rule_errors) == 0
	count(authz.implication_errors) == 0
}

test_rule_errors_lists_each_mistake if {
	tools := {
		"ok": {"list": ["a"], "call": ["b"]},
		"not_object": ["call"],
		"typo": {"calls": ["b"]},
		"list_string": {"list": "a"},
		"call_numbers": {"call": [1]},
	}
	got := authz.rule_errors with data.tools as tools
	got == {
		"not_object": {"the rule must be an object"},
		"typo": {`unknown key "calls"`},
		"list_string": {"list must be an array of strings"},
		"call_numbers": {"call must be an array of strings"},
	}
}

test_misconfigured_tool_is_hidden if {
	tools := {"add": {"calls": ["mcp:tools:call"]}, "whoami": {}}
	inp := call_input(user, "add")
	authz.visible_tools == {"whoami"} with input as inp with data.tools as tools
	not authz.allow with input as inp with data.tools as tools
	authz.reason == `tool "add" is misconfigured` with input as inp with data.tools as tools
	not authz.required_scopes with input as inp with data.tools as tools
}

test_implication_errors_hide_every_tool if {
	every implies in [{"a": "b"}, {"a": ["b", 1]}, ["a"]] {
		authz.implication_errors != set() with data.scope_implies as implies
		authz.visible_tools == set() with input as list_input(with_scopes(["mcp:admin"])) with data.scope_implies as implies
	}
	got := authz.implication_errors with data.scope_implies as {"a": "b", "c": ["d"]}
	got == {"scope_implies.a must be an array of strings"}
	got_list := authz.implication_errors with data.scope_implies as ["a"]
	got_list == {"scope_implies must be an object"}
}
