package mcp.authz_test

import data.mcp.authz

# The tools of @modelcontextprotocol/server-filesystem behind the upstream
# "fs" (prefix fs_), with the annotations it lists, and toolgate's own.
read_tools := {"fs_read_text_file", "fs_read_multiple_files", "fs_list_directory", "fs_search_files", "fs_get_file_info"}

write_tools := {"fs_write_file", "fs_edit_file", "fs_create_directory", "fs_move_file"}

catalog := array.concat(
	[{"name": name, "description": "", "annotations": {"readOnlyHint": true}, "server": "builtin"} | some name in ["add", "whoami"]],
	array.concat(
		[{"name": name, "description": "", "annotations": {"readOnlyHint": true}, "server": "fs"} | some name in read_tools],
		[{"name": name, "description": "", "annotations": {"readOnlyHint": false}, "server": "fs"} | some name in write_tools],
	),
)

principal(fields) := object.union(
	{"sub": "auth0|1", "iss": "https://example.us.auth0.com/", "client_id": "c", "provider": "auth0", "org_id": "", "scopes": [], "permissions": [], "roles": [], "claims": {}},
	fields,
)

visible(p) := tools if {
	tools := authz.visible_tools with input as {"principal": p, "action": "tools/list", "tools": catalog}
}

call(p, name) := {"principal": p, "action": "tools/call", "tools": catalog, "tool": t, "arguments": {"path": "/srv/share/a.txt"}} if {
	some entry in catalog
	entry.name == name
	t := {"name": name, "annotations": entry.annotations, "server": entry.server}
}

test_reader_sees_only_the_read_tools if {
	visible(principal({"permissions": ["fs:read"]})) == read_tools
	visible(principal({"roles": ["reader"]})) == read_tools
}

test_editor_sees_every_tool_of_the_server if {
	visible(principal({"permissions": ["fs:write"]})) == read_tools | write_tools
	visible(principal({"roles": ["editor"]})) == read_tools | write_tools
}

test_a_tool_without_read_only_hint_is_for_editors if {
	tools := array.concat(catalog, [{"name": "fs_new_tool", "description": "", "annotations": {}, "server": "fs"}])
	not "fs_new_tool" in authz.visible_tools with input as {"principal": principal({"roles": ["reader"]}), "action": "tools/list", "tools": tools}
	"fs_new_tool" in authz.visible_tools with input as {"principal": principal({"roles": ["editor"]}), "action": "tools/list", "tools": tools}
}

test_nobody_else_sees_anything if {
	visible(principal({})) == set()
	visible(principal({"permissions": ["fs:admin"], "roles": ["viewer"]})) == set()
	visible(principal({"provider": "anonymous", "permissions": ["fs:write"], "roles": ["editor"]})) == set()
}

test_reader_calls_read_tools_not_write_tools if {
	reader := principal({"roles": ["reader"]})
	authz.allow with input as call(reader, "fs_read_text_file")
	not authz.allow with input as call(reader, "fs_write_file")
	authz.reason == `tool "fs_write_file" is not available` with input as call(reader, "fs_write_file")
}

test_editor_calls_write_tools if {
	every name in write_tools {
		authz.allow with input as call(principal({"roles": ["editor"]}), name)
	}
}

test_data_has_no_rule_errors if {
	count(authz.rule_errors) == 0
}
