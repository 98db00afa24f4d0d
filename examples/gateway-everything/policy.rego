# toolgate default policy: which MCP tools a principal may see and call.
#
# Operators edit data.json, not this file:
#
#   tool_rules.<tool>            The rule of the tool the client sees by that
#                                name (an upstream's tools with its prefix).
#   server_rules.<upstream>      The rule of every tool of that upstream MCP
#                                server (input.tool.server) that has no
#                                tool_rules entry. Never used for toolgate's
#                                own tools (server "builtin").
#                                A tool with neither is never visible (deny by
#                                default).
#
# An entry of either is one rule or a list of rules. A tool is visible if a
# rule of its entry applies to it and grants it; a call uses the first such
# rule of the list (its call_scopes and arguments). A rule:
#
#     {}                         every authenticated principal.
#     any_of                     {"permissions": [..], "scopes": [..], "roles": [..]}:
#                                visible if the principal has ANY listed item.
#                                Permissions are effective permissions (its own
#                                plus those its roles grant via role_permissions).
#                                Absent, {} or only empty lists = every
#                                authenticated principal.
#     anonymous                  true: the tool is public, visible to the
#                                anonymous principal (provider "anonymous") and
#                                to everyone else, without any_of. Otherwise the
#                                anonymous principal never sees the tool.
#     annotations                {"readOnlyHint": true, ..}: the rule applies
#                                only to tools whose annotations hold each key
#                                with that value (a tool without the key does
#                                not match). Absent = every tool of the entry.
#     call_scopes                [..]: scopes the token must carry to CALL the
#                                tool (not to see it). If one is missing the call
#                                is denied and required_scopes lists them all
#                                (step-up: 403 insufficient_scope).
#     arguments.<arg>            Constraints on input.arguments, checked when the
#                                argument is present and not null:
#       required                 true: it must be present and not null.
#       max_length               a string of at most this many characters.
#       minimum, maximum         a number within these bounds (inclusive).
#                                A value of the wrong type is a violation.
#     limits                     [{"each": "principal", "rate": 10, "per": "1m"}, ..]:
#                                rate limits on the calls the rule allows; every
#                                one must have room for a call to run. each is
#                                principal (iss + sub), organisation (org_id) or
#                                client (client_id); a principal without an
#                                org_id or client_id is counted on its own. rate
#                                calls may come at once, then the budget refills
#                                by one every per/rate (GCRA). A tool_rules
#                                limit counts that tool's calls; a server_rules
#                                limit counts the calls of every tool of that
#                                upstream together.
#   role_permissions.<role>      [..]: permissions granted by that role.
#
# "Readers see the read-only tools of fs, editors all of them":
#
#   "server_rules": {"fs": [
#     {"any_of": {"roles": ["reader"]}, "annotations": {"readOnlyHint": true}},
#     {"any_of": {"roles": ["editor"]}}
#   ]}
#
# A mistake in an entry (an unknown key, a value of the wrong type, in any of
# its rules) never widens access: it denies every call of the tools the entry
# rules: `tool "<name>" is misconfigured`; a rule whose annotations are not an
# object applies to no tool. List the mistakes with
# `opa eval -d rego/ data.mcp.authz.rule_errors` (by tool name, and by
# "server_rules.<upstream>"); `opa test rego/` fails while there are any.
#
# A tool must also be in the catalog (input.tools) to be visible. A call runs
# only when its tool is in visible_tools and allow is true. Denials are checked
# in order: tool not visible, misconfigured rule, missing call scopes, argument
# violations; reason is the first that applies.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason, required_scopes,
# limits.

default allow := false

# The tools tools/list returns: the catalog's tools whose rule grants them.
# A partial set, so that a call asks visible_tools[tool_name] and OPA checks
# that one tool's rule instead of computing the whole set. (A plain ref walk
# is cheaper here than `some t in input.tools`; the name first, so that a
# call, whose name is bound, binds no other entry of the catalog.)
visible_tools contains name if {
	some i
	name := input.tools[i].name
	tool := input.tools[i]
	granted(name, object.get(tool, "server", ""), object.get(tool, "annotations", {}))
}

allow if {
	is_call
	visible_tools[tool_name]
	not misconfigured
	count(missing_scopes) == 0
	count(argument_violations) == 0
}

# The first denial that applies, each rule excluding the ones before it.
# (Not an else chain: OPA's partial evaluation, which tells the gate that a
# call's decision does not depend on its arguments, does not see through
# else, so a chain whose last step reads the arguments would make every
# decision depend on them.)
reason := sprintf("tool %q is not available", [tool_name]) if {
	is_call
	not visible_tools[tool_name]
}

reason := sprintf("tool %q is misconfigured", [tool_name]) if {
	callable
	misconfigured
}

reason := scope_reason if {
	callable
	not misconfigured
	count(missing_scopes) > 0
}

reason := concat("; ", sort(argument_violations)) if {
	callable
	not misconfigured
	count(missing_scopes) == 0
	count(argument_violations) > 0
}

# Every scope the call needs, so a single challenge carries all of them.
required_scopes := {s | some s in call_rule.call_scopes} if {
	is_call
	visible_tools[tool_name]
	not misconfigured
	count(missing_scopes) > 0
}

# The rate limits of an allowed call: those of the rule it is held to, keyed
# by where the rule lives (the tool, or its whole upstream) and by whom they
# count. Read by the gate for an allowed call only.
limits contains {"key": json.marshal(array.concat(limit_scope, limit_subject(spec.each))), "rate": spec.rate, "per": spec.per, "name": sprintf("%s: %v calls per %s for each %s", [limit_scope_name, spec.rate, spec.per, spec.each])} if {
	is_call
	some spec in object.get(call_rule, "limits", [])
}

limit_scope := ["tool", tool_name] if has_tool_rule(tool_name)

limit_scope := ["server", tool_server] if not has_tool_rule(tool_name)

limit_scope_name := tool_name if has_tool_rule(tool_name)

limit_scope_name := sprintf("upstream %s", [tool_server]) if not has_tool_rule(tool_name)

limit_subject("principal") := principal_subject

principal_subject := ["principal", input.principal.iss, input.principal.sub]

# The principal's fields are read by their paths, not with object.get of
# input.principal, so that the caches can key a principal by the fields
# the policy reads (docs/performance.md).
limit_subject("organisation") := ["organisation", input.principal.org_id] if input.principal.org_id != ""

limit_subject("organisation") := principal_subject if input.principal.org_id == ""

limit_subject("client") := ["client", input.principal.client_id] if input.principal.client_id != ""

limit_subject("client") := principal_subject if input.principal.client_id == ""

# Helpers.

# Anything that is not a principal of a real provider is treated as anonymous.
authenticated if {
	provider := input.principal.provider
	is_string(provider)
	not provider in {"", "anonymous"}
}

# The entry of a tool: its tool_rules entry, else its upstream's
# server_rules entry (never for toolgate's own tools, nor for a tool outside
# the catalog, whose server is ""). A lookup of that one entry, so the cost
# of a decision does not grow with the number of rules.
tool_entry(name, _) := data.tool_rules[name]

tool_entry(name, server) := data.server_rules[server] if {
	not server in {"", "builtin"}
	not has_tool_rule(name)
}

# Unification, so that an entry of false or null still counts as one.
has_tool_rule(name) if data.tool_rules[name] = _

# An entry is one rule or a list of them.
rule_list(entry) := entry if is_array(entry)

rule_list(entry) := [entry] if not is_array(entry)

# Whether a rule of the tool's entry lets this principal see it, catalog
# aside. (Not through rule_list: a single rule, the usual entry, is then
# checked without building a list.)
granted(name, server, annotations) if grants_entry(tool_entry(name, server), annotations)

grants_entry(entry, annotations) if {
	not is_array(entry)
	grants_tool(entry, annotations)
}

grants_entry(entry, annotations) if {
	is_array(entry)
	some rule in entry
	grants_tool(rule, annotations)
}

# The positions of the rules of the tool's entry that do.
granting(name, server, annotations) := {i |
	some i, rule in rule_list(tool_entry(name, server))
	grants_tool(rule, annotations)
}

grants_tool(rule, annotations) if {
	applies(rule, annotations)
	grants_principal(rule)
}

# A rule applies to the tools whose annotations hold each of its own. A rule
# whose annotations are not an object (or that is not an object) applies to
# none: a mistake never widens.
applies(rule, annotations) if {
	limits := object.get(rule, "annotations", {})
	is_object(limits)
	every key, value in limits {
		annotations[key] == value
	}
}

grants_principal(rule) if {
	authenticated
	grants(rule)
}

grants_principal(rule) if rule.anonymous == true

grants(rule) if {
	any_of := object.get(rule, "any_of", null)
	any_of == null
}

grants(rule) if {
	is_object(rule.any_of)
	every _, items in rule.any_of {
		count(items) == 0
	}
}

grants(rule) if {
	some p in rule.any_of.permissions
	p in effective_permissions
}

grants(rule) if {
	some s in rule.any_of.scopes
	s in principal_scopes
}

grants(rule) if {
	some r in rule.any_of.roles
	r in principal_roles
}

principal_scopes := {s | some s in input.principal.scopes}

principal_roles := {r | some r in input.principal.roles}

effective_permissions contains p if {
	some p in input.principal.permissions
}

effective_permissions contains p if {
	some r in principal_roles
	some p in data.role_permissions[r]
}

is_call if input.action == "tools/call"

callable if {
	is_call
	visible_tools[tool_name]
}

# Not object.get(input, ...): a call naming the whole input would depend, for
# partial evaluation, on every part of it, the arguments included.
default tool_name := ""

tool_name := input.tool.name

default tool_server := ""

tool_server := input.tool.server

default tool_annotations := {}

tool_annotations := input.tool.annotations

call_entry := tool_entry(tool_name, tool_server) if is_call

# The rule a call is held to: the first of its entry that made the tool
# visible.
call_rule := rules[min(granting(tool_name, tool_server, tool_annotations))] if {
	is_call
	rules := rule_list(call_entry)
}

missing_scopes contains s if {
	some s in object.get(call_rule, "call_scopes", [])
	not s in principal_scopes
}

scope_reason := sprintf("tool %q requires scope %s", [tool_name, concat(", ", sort(missing_scopes))]) if {
	count(missing_scopes) == 1
} else := sprintf("tool %q requires scopes %s", [tool_name, concat(", ", sort(missing_scopes))])

# input.arguments by its path, like tool_name: the caches key a principal by
# the fields of input.principal the policy names, and the whole input names
# every one.
default call_arguments := {}

call_arguments := input.arguments

argument_violations contains sprintf("argument %q is required", [arg]) if {
	some arg, c in object.get(call_rule, "arguments", {})
	c.required == true
	object.get(call_arguments, arg, null) == null
}

argument_violations contains sprintf("argument %q must be a string", [arg]) if {
	some arg, c in object.get(call_rule, "arguments", {})
	"max_length" in object.keys(c)
	value := call_arguments[arg]
	value != null
	not is_string(value)
}

argument_violations contains sprintf("argument %q is longer than %v characters", [arg, c.max_length]) if {
	some arg, c in object.get(call_rule, "arguments", {})
	value := call_arguments[arg]
	is_string(value)
	count(value) > c.max_length
}

argument_violations contains sprintf("argument %q must be a number", [arg]) if {
	some arg, c in object.get(call_rule, "arguments", {})
	some bound in ["minimum", "maximum"]
	bound in object.keys(c)
	value := call_arguments[arg]
	value != null
	not is_number(value)
}

argument_violations contains sprintf("argument %q is less than %v", [arg, c.minimum]) if {
	some arg, c in object.get(call_rule, "arguments", {})
	value := call_arguments[arg]
	is_number(value)
	value < c.minimum
}

argument_violations contains sprintf("argument %q is greater than %v", [arg, c.maximum]) if {
	some arg, c in object.get(call_rule, "arguments", {})
	value := call_arguments[arg]
	is_number(value)
	value > c.maximum
}

# Mistakes in data.tool_rules, by tool name, and in data.server_rules, by
# "server_rules.<upstream>". Typos must not silently drop a constraint, so
# calls to a tool whose entry has any of these are denied. A call checks
# only its own tool's entry (entry_mistakes of call_entry), so the cost of a
# decision does not grow with the number of rules.
rule_errors[name] := mistakes if {
	some name, entry in data.tool_rules
	mistakes := entry_mistakes(entry)
	count(mistakes) > 0
}

rule_errors[sprintf("server_rules.%s", [server])] := mistakes if {
	some server, entry in data.server_rules
	mistakes := entry_mistakes(entry)
	count(mistakes) > 0
}

misconfigured if count(entry_mistakes(call_entry)) > 0

entry_mistakes(entry) := rule_mistakes(entry) if not is_array(entry)

entry_mistakes(entry) := {sprintf("rule %d: %s", [i, m]) |
	some i, rule in entry
	some m in rule_mistakes(rule)
} if is_array(entry)

rule_mistakes(rule) := {"the rule must be an object"} if {
	not is_object(rule)
} else := union({
	{sprintf("unknown key %q", [key]) |
		some key, _ in rule
		not key in {"any_of", "anonymous", "annotations", "call_scopes", "arguments", "limits"}
	},
	{"annotations must be an object" | not is_object(object.get(rule, "annotations", {}))},
	{"anonymous must be a boolean" | not is_boolean(object.get(rule, "anonymous", false))},
	{"any_of must be an object" | not is_object(object.get(rule, "any_of", {}))},
	{sprintf("unknown key any_of.%s", [key]) |
		some key, _ in object_member(rule, "any_of")
		not key in {"permissions", "scopes", "roles"}
	},
	{sprintf("any_of.%s must be an array of strings", [key]) |
		some key, items in object_member(rule, "any_of")
		not string_array(items)
	},
	{"call_scopes must be an array of strings" | not string_array(object.get(rule, "call_scopes", []))},
	{"arguments must be an object" | not is_object(object.get(rule, "arguments", {}))},
	{sprintf("arguments.%s must be an object", [arg]) |
		some arg, c in object_member(rule, "arguments")
		not is_object(c)
	},
	{sprintf("unknown key arguments.%s.%s", [arg, key]) |
		some arg, c in object_member(rule, "arguments")
		is_object(c)
		some key, _ in c
		not key in {"max_length", "minimum", "maximum", "required"}
	},
	{sprintf("arguments.%s.%s must be a number", [arg, key]) |
		some arg, c in object_member(rule, "arguments")
		is_object(c)
		some key in ["max_length", "minimum", "maximum"]
		not is_number(object.get(c, key, 0))
	},
	{sprintf("arguments.%s.required must be a boolean", [arg]) |
		some arg, c in object_member(rule, "arguments")
		is_object(c)
		not is_boolean(object.get(c, "required", false))
	},
	limit_mistakes(rule),
})

limit_mistakes(rule) := {"limits must be an array"} if {
	not is_array(object.get(rule, "limits", []))
} else := union({
	{sprintf("limits[%d] must be an object", [i]) |
		some i, l in rule.limits
		not is_object(l)
	},
	{sprintf("unknown key limits[%d].%s", [i, key]) |
		some i, l in rule.limits
		is_object(l)
		some key, _ in l
		not key in {"each", "rate", "per"}
	},
	{sprintf("limits[%d].each must be one of principal, organisation, client", [i]) |
		some i, l in rule.limits
		is_object(l)
		not object.get(l, "each", null) in {"principal", "organisation", "client"}
	},
	{sprintf("limits[%d].rate must be an integer from 1 to 1000000000", [i]) |
		some i, l in rule.limits
		is_object(l)
		not positive_integer(object.get(l, "rate", null))
	},
	{sprintf("limits[%d].per must be a duration such as \"1m\" or \"24h\"", [i]) |
		some i, l in rule.limits
		is_object(l)
		not duration(object.get(l, "per", null))
	},
})

positive_integer(x) if {
	is_number(x)
	x >= 1
	x <= 1000000000
	x == round(x)
}

# A Go duration (the gate parses it with time.ParseDuration), checked
# before parse_duration_ns, which fails the evaluation on anything else.
duration(x) if {
	is_string(x)
	regex.match(`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, x)
	time.parse_duration_ns(x) > 0
}

# object_member is rule[key] when that is an object, else {}.
object_member(rule, key) := rule[key] if is_object(rule[key])

else := {}

string_array(x) if {
	is_array(x)
	every item in x {
		is_string(item)
	}
}
