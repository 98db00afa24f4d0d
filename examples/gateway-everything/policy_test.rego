package mcp.authz_test

import data.mcp.authz

# The data of this directory over a catalog shaped like what
# @modelcontextprotocol/server-everything lists as the upstream "ev".

reader := {"sub": "r", "iss": "https://idp.example/", "client_id": "", "provider": "oidc", "org_id": "", "scopes": [], "permissions": [], "roles": ["reader"], "claims": {}}

editor := object.union(reader, {"sub": "e", "roles": ["editor"]})

stranger := object.union(reader, {"sub": "s", "roles": []})

anonymous := {"sub": "", "iss": "", "client_id": "", "provider": "anonymous", "org_id": "", "scopes": [], "permissions": [], "roles": [], "claims": {}}

tools := [
	{"name": "ev_echo", "description": "", "annotations": {"readOnlyHint": true}, "server": "ev", "digest": "", "pinned": false},
	{"name": "ev_toggle-logging", "description": "", "annotations": {}, "server": "ev", "digest": "", "pinned": false},
]

prompts := [
	{"name": "ev_simple-prompt", "title": "", "description": "", "arguments": [], "server": "ev"},
	{"name": "ev_args-prompt", "title": "", "description": "", "arguments": ["city"], "server": "ev"},
	{"name": "ev_completable-prompt", "title": "", "description": "", "arguments": ["department"], "server": "ev"},
	{"name": "ev_unruled-prompt", "title": "", "description": "", "arguments": [], "server": "ev"},
]

resources := [
	{"uri": "demo://resource/static/document/architecture.md", "name": "a", "title": "", "description": "", "mime_type": "text/markdown", "server": "ev"},
	{"uri": "demo://resource/dynamic/text/1", "name": "t1", "title": "", "description": "", "mime_type": "text/plain", "server": "ev"},
	{"uri": "other://unruled", "name": "u", "title": "", "description": "", "mime_type": "", "server": "ev"},
]

templates := [{"uri_template": "demo://resource/dynamic/text/{resourceId}", "name": "d", "title": "", "description": "", "mime_type": "", "server": "ev"}]

catalog(principal, action) := {
	"principal": principal, "action": action,
	"prompts": prompts, "resources": resources, "resource_templates": templates,
}

visible_tools(principal) := v if {
	v := authz.visible_tools with input as {"principal": principal, "action": "tools/list", "tools": tools}
}

test_readers_see_read_only_tools_editors_all if {
	visible_tools(reader) == {"ev_echo"}
	visible_tools(editor) == {"ev_echo", "ev_toggle-logging"}
	visible_tools(stranger) == set()
	visible_tools(anonymous) == set()
}

test_prompts_by_role_and_none_without_a_rule if {
	authz.visible_prompts == {"ev_simple-prompt"} with input as catalog(reader, "prompts/list")
	authz.visible_prompts == {"ev_simple-prompt", "ev_args-prompt", "ev_completable-prompt"} with input as catalog(editor, "prompts/list")
	authz.visible_prompts == set() with input as catalog(stranger, "prompts/list")
	authz.visible_prompts == set() with input as catalog(anonymous, "prompts/list")
}

test_resources_by_uri_prefix if {
	authz.visible_resources == {"demo://resource/static/document/architecture.md"} with input as catalog(reader, "resources/list")
	authz.visible_resources == {
		"demo://resource/static/document/architecture.md",
		"demo://resource/dynamic/text/1",
		"demo://resource/dynamic/text/{resourceId}",
	} with input as catalog(editor, "resources/list")
}

read(principal, uri, template) if {
	authz.allow with input as object.union(catalog(principal, "resources/read"), {"resource": {"uri": uri, "uri_template": template, "server": "ev"}})
}

test_reads_follow_the_rules if {
	read(reader, "demo://resource/static/document/architecture.md", "")
	not read(reader, "demo://resource/dynamic/text/7", "demo://resource/dynamic/text/{resourceId}")
	read(editor, "demo://resource/dynamic/text/7", "demo://resource/dynamic/text/{resourceId}")
	not read(editor, "other://unruled", "")
}

get(principal, name) if {
	authz.allow with input as object.union(catalog(principal, "prompts/get"), {"prompt": {"name": name, "server": "ev", "arguments": {}}})
}

test_prompt_get_follows_the_rules if {
	get(reader, "ev_simple-prompt")
	not get(reader, "ev_args-prompt")
	get(editor, "ev_args-prompt")
	not get(editor, "ev_unruled-prompt")
}

test_the_data_has_no_mistakes if {
	count(authz.rule_errors) == 0
}
