package mcp.authz_test

import data.mcp.authz

# "Each user at most 10 images a minute, each organisation 500 a day", and
# every client at most 100 calls a minute of the upstream fs, as data.

catalog := [
	{"name": "add", "description": "", "annotations": {}, "server": "builtin"},
	{"name": "whoami", "description": "", "annotations": {}, "server": "builtin"},
	{"name": "image_generation", "description": "", "annotations": {}, "server": "builtin"},
	{"name": "fs_read_text_file", "description": "", "annotations": {"readOnlyHint": true}, "server": "fs"},
	{"name": "fs_write_file", "description": "", "annotations": {"readOnlyHint": false}, "server": "fs"},
]

alice := {
	"sub": "alice", "iss": "https://example.us.auth0.com/", "client_id": "cursor", "provider": "auth0",
	"org_id": "org_acme", "scopes": ["images:write"], "permissions": ["image_generation"], "roles": [], "claims": {},
}

call(principal, name, args) := {
	"principal": principal,
	"action": "tools/call",
	"tools": catalog,
	"tool": {"name": t.name, "annotations": t.annotations, "server": t.server},
	"arguments": args,
} if {
	some t in catalog
	t.name == name
}

test_data_has_no_rule_errors if {
	count(authz.rule_errors) == 0
}

test_image_generation_is_limited_per_user_and_per_organisation if {
	inp := call(alice, "image_generation", {"prompt": "a cat"})
	authz.allow with input as inp
	authz.limits == {
		{"key": `["tool","image_generation","principal","https://example.us.auth0.com/","alice"]`, "rate": 10, "per": "1m", "name": "image_generation: 10 calls per 1m for each principal"},
		{"key": `["tool","image_generation","organisation","org_acme"]`, "rate": 500, "per": "24h", "name": "image_generation: 500 calls per 24h for each organisation"},
	} with input as inp
}

test_colleagues_share_the_organisation_budget_not_their_own if {
	bob := object.union(alice, {"sub": "bob"})
	mine := authz.limits with input as call(alice, "image_generation", {"prompt": "a cat"})
	theirs := authz.limits with input as call(bob, "image_generation", {"prompt": "a cat"})
	count(mine & theirs) == 1
	some shared in (mine & theirs)
	contains(shared.key, "organisation")
}

test_every_tool_of_fs_shares_one_budget_per_client if {
	read := authz.limits with input as call(alice, "fs_read_text_file", {})
	write := authz.limits with input as call(alice, "fs_write_file", {})
	read == write
	read == {{"key": `["server","fs","client","cursor"]`, "rate": 100, "per": "1m", "name": "upstream fs: 100 calls per 1m for each client"}}
}

test_tools_without_limits_have_none if {
	count(authz.limits) == 0 with input as call(alice, "add", {"a": 1, "b": 2})
}
