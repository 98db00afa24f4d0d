package mcp.authz_test

import data.mcp.authz

# Prompts and resources (prompts_resources.rego).

reader := object.union(user, {"roles": ["reader"]})

editor := object.union(user, {"roles": ["editor"]})

pr_prompts := [
	{"name": "ev_simple", "title": "", "description": "", "arguments": [], "server": "ev"},
	{"name": "ev_args", "title": "", "description": "", "arguments": ["city"], "server": "ev"},
	{"name": "ev_unruled", "title": "", "description": "", "arguments": [], "server": "ev"},
]

pr_resources := [
	{"uri": "demo://static/doc/a.md", "name": "a", "title": "", "description": "", "mime_type": "", "server": "ev"},
	{"uri": "demo://static/secret/b.md", "name": "b", "title": "", "description": "", "mime_type": "", "server": "ev"},
	{"uri": "other://c", "name": "c", "title": "", "description": "", "mime_type": "", "server": "ev"},
]

pr_templates := [
	{"uri_template": "demo://dynamic/{id}", "name": "d", "title": "", "description": "", "mime_type": "", "server": "ev"},
	{"uri_template": "demo://static/doc/{name}", "name": "e", "title": "", "description": "", "mime_type": "", "server": "ev"},
]

pr_prompt_rules := {
	"ev_simple": {"any_of": {"roles": ["reader", "editor"]}},
	"ev_args": {"any_of": {"roles": ["editor"]}},
}

pr_resource_rules := {
	"demo://": {"any_of": {"roles": ["editor"]}},
	"demo://static/doc/": {"any_of": {"roles": ["reader", "editor"]}},
	"demo://static/secret/": {"any_of": {"roles": ["admin"]}},
	"demo://dynamic/{id}": [{"any_of": {"roles": ["reader"]}}, {"any_of": {"roles": ["editor"]}}],
}

pr_input(principal, action) := {
	"principal": principal,
	"action": action,
	"prompts": pr_prompts,
	"resources": pr_resources,
	"resource_templates": pr_templates,
}

pr_prompts_visible(principal) := v if {
	v := authz.visible_prompts with input as pr_input(principal, "prompts/list")
		with data.prompt_rules as pr_prompt_rules
}

pr_resources_visible(principal) := v if {
	v := authz.visible_resources with input as pr_input(principal, "resources/list")
		with data.resource_rules as pr_resource_rules
}

pr_get(principal, name) := d if {
	inp := object.union(pr_input(principal, "prompts/get"), {"prompt": {"name": name, "server": "ev", "arguments": {}}})
	d := {"allow": authz.allow, "reason": concat("", [r | r := authz.reason])} with input as inp
		with data.prompt_rules as pr_prompt_rules
}

pr_read(principal, action, uri, template) := d if {
	inp := object.union(pr_input(principal, action), {"resource": {"uri": uri, "uri_template": template, "server": "ev"}})
	d := {"allow": authz.allow, "reason": concat("", [r | r := authz.reason])} with input as inp
		with data.resource_rules as pr_resource_rules
}

test_prompts_visible_by_rule_and_deny_without_one if {
	pr_prompts_visible(reader) == {"ev_simple"}
	pr_prompts_visible(editor) == {"ev_simple", "ev_args"}
	pr_prompts_visible(user) == set()
	pr_prompts_visible(anonymous) == set()
}

test_no_prompt_rules_no_prompt if {
	got := authz.visible_prompts with input as pr_input(editor, "prompts/list")
	got == set()
}

test_prompt_get_follows_its_rule if {
	pr_get(editor, "ev_args").allow == true
	d := pr_get(reader, "ev_args")
	d.allow == false
	d.reason == "prompt \"ev_args\" is not available"
	pr_get(reader, "ev_simple").allow == true
	pr_get(editor, "ev_unruled").allow == false
}

test_completion_of_a_prompt_follows_its_rule if {
	inp := object.union(pr_input(reader, "completion/complete"), {"prompt": {"name": "ev_args", "server": "ev", "arguments": {}}})
	not authz.allow with input as inp with data.prompt_rules as pr_prompt_rules
	inp2 := object.union(pr_input(editor, "completion/complete"), {"prompt": {"name": "ev_args", "server": "ev", "arguments": {}}})
	authz.allow with input as inp2 with data.prompt_rules as pr_prompt_rules
}

test_resources_visible_by_longest_prefix_or_template if {
	pr_resources_visible(reader) == {"demo://static/doc/a.md", "demo://dynamic/{id}", "demo://static/doc/{name}"}
	pr_resources_visible(editor) == {"demo://static/doc/a.md", "demo://dynamic/{id}", "demo://static/doc/{name}"}
	pr_resources_visible(with_roles(["admin"])) == {"demo://static/secret/b.md"}
	pr_resources_visible(user) == set()
}

test_resource_read_through_a_template_is_ruled_by_the_template if {
	pr_read(reader, "resources/read", "demo://dynamic/7", "demo://dynamic/{id}").allow == true

	# Without the template, the prefix demo:// rules: editors only.
	pr_read(reader, "resources/read", "demo://dynamic/7", "").allow == false
	pr_read(editor, "resources/read", "demo://dynamic/7", "").allow == true
}

test_resource_read_and_subscribe_follow_the_rule if {
	every action in ["resources/read", "resources/subscribe", "completion/complete"] {
		pr_read(reader, action, "demo://static/doc/a.md", "").allow == true
		d := pr_read(editor, action, "demo://static/secret/b.md", "")
		d.allow == false
		d.reason == "resource \"demo://static/secret/b.md\" is not available"
		pr_read(editor, action, "other://c", "").allow == false
	}
}

test_default_data_shows_no_prompt_or_resource if {
	got := authz.visible_resources with input as pr_input(editor, "resources/list")
	got == set()
}

test_prompt_and_resource_rule_mistakes_deny_and_are_listed if {
	prompt_rules := {"p": {"any_of": {"roles": ["reader"]}, "call_scopes": ["x"]}}
	resource_rules := {"demo://": [{"any_of": {"role": ["reader"]}}, {"annotations": {}}]}
	got := authz.rule_errors with data.prompt_rules as prompt_rules with data.resource_rules as resource_rules
	got == {
		"prompt_rules.p": {"key \"call_scopes\" applies to tool rules only"},
		"resource_rules.demo://": {"rule 0: unknown key any_of.role", "rule 1: key \"annotations\" applies to tool rules only"},
	}
	inp := object.union(pr_input(reader, "prompts/get"), {"prompt": {"name": "p", "server": "ev", "arguments": {}}, "prompts": [{"name": "p", "title": "", "description": "", "arguments": [], "server": "ev"}]})
	not authz.allow with input as inp with data.prompt_rules as prompt_rules
	r := authz.reason with input as inp with data.prompt_rules as prompt_rules
	r == "prompt \"p\" is misconfigured"
}

test_tool_decisions_ignore_prompt_and_resource_rules if {
	got := authz.visible_tools with input as list_input(user)
		with data.prompt_rules as pr_prompt_rules
		with data.resource_rules as pr_resource_rules
	got == {"add", "whoami"}
}
