package mcp.authz_test

import data.mcp.authz

# Fixtures: principals of four organisations (enterprise, standard with a
# longer prompt, free with larger numbers, and one not in the data) and
# toolgate's catalog.

principal(org) := {
	"sub": "user-1",
	"iss": "https://issuer.example/",
	"client_id": "client-1",
	"provider": "auth0",
	"org_id": org,
	"scopes": [],
	"permissions": [],
	"roles": [],
	"claims": {},
}

acme := principal("org_acme") # enterprise

globex := principal("org_globex") # standard, prompts up to 1000 characters

initech := principal("org_initech") # free, add up to a million

stranger := principal("org_unknown") # the default tier: free

no_org := principal("")

anonymous := object.union(principal(""), {"sub": "", "iss": "", "client_id": "", "provider": "anonymous"})

catalog := [
	{"name": "add", "description": "Add two numbers", "annotations": {"readOnlyHint": true}},
	{"name": "image_generation", "description": "Generate an image", "annotations": {"readOnlyHint": false}},
	{"name": "whoami", "description": "Who am I", "annotations": {"readOnlyHint": true}},
]

list_input(p) := {"principal": p, "action": "tools/list", "tools": catalog}

call_input(p, name, args) := {
	"principal": p,
	"action": "tools/call",
	"tools": catalog,
	"tool": {"name": name, "annotations": {}},
	"arguments": args,
}

visible(p) := tools if {
	tools := authz.visible_tools with input as list_input(p)
}

allowed(p, name, args) if authz.allow with input as call_input(p, name, args)

reason(p, name, args) := r if {
	r := authz.reason with input as call_input(p, name, args)
}

repeat(s, n) := concat("", [s | some _ in numbers.range(1, n)])

# Visibility: the tools of the tier.

test_every_tier_has_every_tool if {
	every p in [acme, globex, initech, stranger, no_org] {
		visible(p) == {"add", "whoami", "image_generation"}
	}
}

# The free tier without image_generation.
free_without_images := object.remove(data.tiers.free, ["image_generation"])

test_tool_missing_from_tier_is_not_visible if {
	got := authz.visible_tools with input as list_input(stranger) with data.tiers.free as free_without_images
	got == {"add", "whoami"}
	inp := call_input(stranger, "image_generation", {"prompt": "a cat"})
	authz.reason == `tool "image_generation" is not available` with input as inp with data.tiers.free as free_without_images
	not authz.required_scopes with input as inp with data.tiers.free as free_without_images
}

test_organization_override_can_add_a_tool if {
	inp := call_input(initech, "image_generation", {"prompt": "a black cat"})
	"image_generation" in authz.visible_tools with input as inp
		with data.tiers.free as free_without_images
		with data.organizations.org_initech.limits.image_generation as {"prompt": {"max_length": 10}}
	authz.reason == `argument "prompt" is longer than 10 characters` with input as inp
		with data.tiers.free as free_without_images
		with data.organizations.org_initech.limits.image_generation as {"prompt": {"max_length": 10}}
	not "image_generation" in authz.visible_tools with input as call_input(stranger, "whoami", {})
		with data.tiers.free as free_without_images
		with data.organizations.org_initech.limits.image_generation as {"prompt": {"max_length": 10}}
}

test_anonymous_sees_nothing if {
	visible(anonymous) == set()
	visible(object.union(anonymous, {"org_id": "org_acme"})) == set()
	visible(object.union(acme, {"provider": ""})) == set()
}

test_missing_principal_sees_nothing if {
	got := authz.visible_tools with input as {"action": "tools/list", "tools": catalog}
	got == set()
}

test_only_catalog_tools_are_visible if {
	got := authz.visible_tools with input as object.union(list_input(acme), {"tools": [catalog[1]]})
	got == {"image_generation"}
}

test_unknown_tier_shows_nothing if {
	got := authz.visible_tools with input as list_input(acme)
		with data.organizations as {"org_acme": {"tier": "platinum"}}
	got == set()
	got_default := authz.visible_tools with input as list_input(stranger)
		with data.default_tier as "trial"
	got_default == set()
}

# A catalog of 1000 tools and a tier with 500 of them.
big_catalog := array.concat(catalog, [{"name": sprintf("tool_%d", [i]), "description": "", "annotations": {}} |
	some i in numbers.range(1, 997)
])

test_visible_tools_with_1000_tool_catalog if {
	tier := {sprintf("tool_%d", [i]): {} | some i in numbers.range(1, 1000); i % 2 == 0}
	got := authz.visible_tools with input as object.union(list_input(stranger), {"tools": big_catalog})
		with data.tiers.free as tier
	count(got) == 498
	inp := object.union(call_input(acme, "add", {"a": 1, "b": 2}), {"tools": big_catalog})
	authz.allow with input as inp
}

# add: bounds per tier and organisation.

test_add_within_bounds_allowed if {
	allowed(stranger, "add", {"a": 1000, "b": -1000})
	allowed(stranger, "add", {"a": 2.5, "b": 0})
	not authz.reason with input as call_input(stranger, "add", {"a": 1, "b": 2})
}

test_add_beyond_tier_bound_denied if {
	not allowed(stranger, "add", {"a": 1001, "b": 0})
	reason(stranger, "add", {"a": 1001, "b": 0}) == `argument "a" exceeds 1000 in absolute value`
	reason(no_org, "add", {"a": 0, "b": -1000.5}) == `argument "b" exceeds 1000 in absolute value`
	not authz.required_scopes with input as call_input(stranger, "add", {"a": 1001, "b": 0})
}

test_add_bounds_depend_on_the_tier if {
	allowed(globex, "add", {"a": 1000000, "b": -1000000})
	not allowed(globex, "add", {"a": 1000001, "b": 0})
	allowed(acme, "add", {"a": 1000000000000, "b": 1})
	not allowed(acme, "add", {"a": 1000000000001, "b": 1})
}

test_organization_override_raises_the_tier_bound if {
	# Initech is on the free tier (1000) with its own bound of a million.
	allowed(initech, "add", {"a": 1000000, "b": 1000000})
	reason(initech, "add", {"a": 1000001, "b": 0}) == `argument "a" exceeds 1000000 in absolute value`
}

test_add_needs_both_numbers if {
	reason(acme, "add", {"a": 1}) == `argument "b" is required`
	reason(acme, "add", {"a": 1, "b": null}) == `argument "b" is required`
	reason(acme, "add", {"a": "1", "b": 2}) == `argument "a" must be a number`
	not allowed(acme, "add", {"a": [1], "b": 2})
}

test_add_without_arguments_denied if {
	inp := object.remove(call_input(acme, "add", {}), ["arguments"])
	authz.reason == `argument "a" is required; argument "b" is required` with input as inp
}

# image_generation: prompt length per tier and organisation.

test_prompt_within_limit_allowed if {
	allowed(stranger, "image_generation", {"prompt": repeat("a", 100)})
	allowed(acme, "image_generation", {"prompt": repeat("a", 2000)})
	allowed(globex, "image_generation", {"prompt": repeat("a", 1000)})
}

test_prompt_over_limit_denied if {
	reason(stranger, "image_generation", {"prompt": repeat("a", 101)}) == `argument "prompt" is longer than 100 characters`
	reason(acme, "image_generation", {"prompt": repeat("a", 2001)}) == `argument "prompt" is longer than 2000 characters`
}

test_organization_override_replaces_the_tier_limit if {
	# Standard allows 500 characters; Globex's override allows 1000, and
	# keeps the tier's other limits (required, min_length).
	allowed(globex, "image_generation", {"prompt": repeat("a", 501)})
	reason(globex, "image_generation", {"prompt": repeat("a", 1001)}) == `argument "prompt" is longer than 1000 characters`
	reason(globex, "image_generation", {}) == `argument "prompt" is required`
	got := reason(principal("org_other"), "image_generation", {"prompt": repeat("a", 501)}) with data.organizations.org_other as {"tier": "standard"}
	got == `argument "prompt" is longer than 500 characters`
}

test_prompt_length_counts_characters_not_bytes if {
	allowed(stranger, "image_generation", {"prompt": repeat("é", 100)})
	not allowed(stranger, "image_generation", {"prompt": repeat("é", 101)})
}

test_empty_prompt_denied if {
	reason(acme, "image_generation", {"prompt": ""}) == `argument "prompt" is shorter than 1 character`
}

test_missing_or_wrong_prompt_denied if {
	reason(acme, "image_generation", {}) == `argument "prompt" is required`
	reason(acme, "image_generation", {"prompt": 42}) == `argument "prompt" must be a string`
}

test_one_character_is_singular if {
	limits := {"add": {"a": {"max_length": 1}}}
	got := reason(stranger, "add", {"a": "ab"}) with data.tiers.free as limits
	got == `argument "a" is longer than 1 character`
}

test_optional_argument_may_be_absent_or_null if {
	limits := {"add": {"a": {"max_abs": 10}, "b": {"max_length": 3}}}
	every args in [{}, {"a": null, "b": null}, {"a": 10, "b": "abc"}] {
		authz.allow with input as call_input(stranger, "add", args) with data.tiers.free as limits
	}
}

test_tool_without_limits_allowed if {
	allowed(stranger, "whoami", {})
	allowed(stranger, "whoami", {"anything": repeat("a", 10000)})
}

test_violations_sorted_and_joined if {
	reason(stranger, "add", {"b": 5000, "a": "x"}) == `argument "a" must be a number; argument "b" exceeds 1000 in absolute value`
}

# Calls that are not available.

test_anonymous_call_not_available if {
	reason(anonymous, "whoami", {}) == `tool "whoami" is not available`
}

test_call_of_unknown_tool_not_available if {
	reason(acme, "delete_everything", {}) == `tool "delete_everything" is not available`
	inp := object.remove(call_input(acme, "add", {"a": 1, "b": 1}), ["tool"])
	authz.reason == `tool "" is not available` with input as inp
}

test_unknown_tier_named_in_reason if {
	inp := call_input(acme, "add", {"a": 1, "b": 1})
	not authz.allow with input as inp with data.organizations.org_acme.tier as "platinum"
	authz.reason == `tier "platinum" does not exist` with input as inp with data.organizations.org_acme.tier as "platinum"
}

test_allow_is_false_outside_tools_call if {
	inp := object.union(call_input(acme, "whoami", {}), {"action": "tools/list"})
	authz.allow == false with input as inp
	not authz.reason with input as inp
}

# Mistakes in the data.

test_default_data_has_no_config_errors if {
	count(authz.config_errors) == 0
}

test_misconfigured_limits_deny_the_tool if {
	every limits in [
		{"add": {"a": {"max_abss": 10}}},
		{"add": {"a": {"max_abs": "10"}}},
		{"add": {"a": {"max_abs": -1}}},
		{"add": {"a": {"required": "yes"}}},
		{"add": {"a": 10}},
		{"add": ["a"]},
	] {
		inp := call_input(stranger, "add", {"a": 1, "b": 1})
		"add" in authz.visible_tools with input as inp with data.tiers.free as limits
		not authz.allow with input as inp with data.tiers.free as limits
		authz.reason == `tool "add" is misconfigured` with input as inp with data.tiers.free as limits
	}
}

test_misconfiguration_is_reported_before_violations if {
	inp := call_input(stranger, "add", {"a": "x"})
	limits := {"add": {"a": {"max_abs": 1, "maxLength": 1}}}
	authz.reason == `tool "add" is misconfigured` with input as inp with data.tiers.free as limits
}

test_config_errors_lists_each_mistake if {
	tiers := {
		"free": {"add": {"a": {"max_abss": 10, "required": "yes"}, "b": 5}, "whoami": []},
		"broken": ["add"],
	}
	organizations := {
		"org_a": {"tier": "gold"},
		"org_b": {"tier": "free", "limit": {}},
		"org_c": {"limits": ["add"]},
		"org_d": {"limits": {"add": {"a": {"max_abs": null}}}},
		"org_e": "free",
	}
	got := authz.config_errors with data.tiers as tiers
		with data.organizations as organizations
		with data.default_tier as "trial"
	got == {
		"default_tier must name a tier",
		"tiers.broken must be an object",
		`tiers.free.add: a.max_abss: 10 is not a valid limit`,
		`tiers.free.add: a.required: "yes" is not a valid limit`,
		"tiers.free.add: b must be an object",
		"tiers.free.whoami: the limits must be an object",
		`organizations.org_a.tier "gold" is not a tier`,
		`organizations.org_b: unknown key "limit"`,
		"organizations.org_c.limits must be an object",
		"organizations.org_d.limits.add: a.max_abs: null is not a valid limit",
		"organizations.org_e must be an object",
	}
}
