# toolgate default policy, prompts and resources (issue 16): which MCP
# prompts and resources a principal may see, get and read. Operators edit
# data.json, not this file:
#
#   prompt_rules.<prompt>        The rule of the prompt the client sees by that
#                                name (an upstream's prompts with its prefix).
#   resource_rules.<key>         The rule of resources, by URI: <key> is a URI
#                                template exactly as listed (it rules the
#                                template and every read through it), or a URI
#                                prefix (it rules every resource, template and
#                                read whose URI starts with it). The most
#                                specific entry rules: the template's own,
#                                else the longest prefix.
#
# A prompt or resource with no entry is never visible (deny by default). An
# entry is one rule or a list of rules, of the shape of tool rules
# (policy.rego) limited to who: any_of and anonymous. A prompt or resource is
# visible when a rule of its entry grants it; then it may be got, read,
# subscribed to and completed. Readers read the documents, editors every
# resource of the demo server:
#
#   "resource_rules": {
#     "demo://resource/static/": {"any_of": {"roles": ["reader", "editor"]}},
#     "demo://": {"any_of": {"roles": ["editor"]}}
#   }
#
# A mistake in an entry (an unknown key, a key of tool rules only, a value of
# the wrong type) denies every action on what it rules and is listed in
# rule_errors as "prompt_rules.<prompt>" or "resource_rules.<key>";
# `toolgate policy check` reports them.
package mcp.authz

# Rules read by the gate: visible_prompts, visible_resources, and allow and
# reason for the actions on one prompt or resource.

visible_prompts contains name if {
	some i
	name := input.prompts[i].name
	grants_entry(data.prompt_rules[name], {})
}

visible_resources contains uri if {
	some i
	uri := input.resources[i].uri
	grants_entry(resource_entry(uri, ""), {})
}

visible_resources contains template if {
	some i
	template := input.resource_templates[i].uri_template
	grants_entry(resource_entry(template, template), {})
}

allow if {
	prompt_action
	grants_entry(prompt_entry, {})
	count(entry_access_mistakes(prompt_entry)) == 0
}

allow if {
	resource_action
	grants_entry(target_resource_entry, {})
	count(entry_access_mistakes(target_resource_entry)) == 0
}

reason := sprintf("prompt %q is not available", [input.prompt.name]) if {
	prompt_action
	not grants_entry(prompt_entry, {})
}

reason := sprintf("prompt %q is misconfigured", [input.prompt.name]) if {
	prompt_action
	grants_entry(prompt_entry, {})
	count(entry_access_mistakes(prompt_entry)) > 0
}

reason := sprintf("resource %q is not available", [input.resource.uri]) if {
	resource_action
	not grants_entry(target_resource_entry, {})
}

reason := sprintf("resource %q is misconfigured", [input.resource.uri]) if {
	resource_action
	grants_entry(target_resource_entry, {})
	count(entry_access_mistakes(target_resource_entry)) > 0
}

# Helpers.

prompt_action if {
	input.action in {"prompts/get", "completion/complete"}
	is_string(input.prompt.name)
}

resource_action if {
	input.action in {"resources/read", "resources/subscribe", "completion/complete"}
	is_string(input.resource.uri)
}

prompt_entry := data.prompt_rules[input.prompt.name]

default target_template := ""

target_template := input.resource.uri_template

target_resource_entry := resource_entry(input.resource.uri, target_template)

# The entry ruling a URI read (or listed) through template ("" for none):
# the template's own, else the longest key of resource_rules that is a
# prefix of the URI.
resource_entry(_, template) := data.resource_rules[template] if template != ""

resource_entry(uri, template) := data.resource_rules[longest_prefix(uri)] if not has_resource_rule(template)

has_resource_rule(template) if {
	template != ""
	data.resource_rules[template] = _
}

longest_prefix(uri) := key if {
	prefixes := {k | some k, _ in data.resource_rules; startswith(uri, k)}
	count(prefixes) > 0
	n := max({count(k) | some k in prefixes})
	some key in prefixes
	count(key) == n
}

# Rules of tool rules only: a prompt or resource rule that has one is a
# mistake, never a constraint silently ignored.
tool_only_keys := {"annotations", "call_scopes", "arguments"}

entry_access_mistakes(entry) := (entry_mistakes(entry) | {sprintf("key %q applies to tool rules only", [key]) |
	not is_array(entry)
	is_object(entry)
	some key, _ in entry
	key in tool_only_keys
}) | {sprintf("rule %d: key %q applies to tool rules only", [i, key]) |
	is_array(entry)
	some i, rule in entry
	is_object(rule)
	some key, _ in rule
	key in tool_only_keys
}

rule_errors[sprintf("prompt_rules.%s", [name])] := mistakes if {
	some name, entry in data.prompt_rules
	mistakes := entry_access_mistakes(entry)
	count(mistakes) > 0
}

rule_errors[sprintf("resource_rules.%s", [key])] := mistakes if {
	some key, entry in data.resource_rules
	mistakes := entry_access_mistakes(entry)
	count(mistakes) > 0
}
