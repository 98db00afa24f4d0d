# toolgate default policy: which MCP tools a principal may see and call.
#
# Operators edit data.json, not this file:
#
#   tool_rules.<tool>            A tool with no entry is never visible (deny by
#                                default). {} = every authenticated principal.
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
#   role_permissions.<role>      [..]: permissions granted by that role.
#
# A mistake in a tool's rule (an unknown key, a value of the wrong type) never
# widens access: it denies every call to that tool: `tool "<name>" is misconfigured`. List the mistakes
# with `opa eval -d rego/ data.mcp.authz.rule_errors`; `opa test rego/` fails
# while there are any.
#
# A tool must also be in the catalog (input.tools) to be visible. A call runs
# only when its tool is in visible_tools and allow is true. Denials are checked
# in order: tool not visible, misconfigured rule, missing call scopes, argument
# violations; reason is the first that applies.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason, required_scopes.

default allow := false

# The tools tools/list returns: the catalog's tools whose rule grants them.
# A partial set, so that a call asks visible_tools[tool_name] and OPA checks
# that one tool's rule instead of computing the whole set. (A plain ref walk
# is cheaper here than `some t in input.tools`.)
visible_tools contains name if {
	name := input.tools[_].name
	granted(name)
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

# Helpers.

# Anything that is not a principal of a real provider is treated as anonymous.
authenticated if {
	provider := input.principal.provider
	is_string(provider)
	not provider in {"", "anonymous"}
}

# Whether the rule of the named tool lets this principal see it, catalog
# aside: a lookup of that one rule.
granted(name) if {
	authenticated
	grants(data.tool_rules[name])
}

granted(name) if data.tool_rules[name].anonymous == true

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

call_rule := data.tool_rules[tool_name] if is_call

missing_scopes contains s if {
	some s in object.get(call_rule, "call_scopes", [])
	not s in principal_scopes
}

scope_reason := sprintf("tool %q requires scope %s", [tool_name, concat(", ", sort(missing_scopes))]) if {
	count(missing_scopes) == 1
} else := sprintf("tool %q requires scopes %s", [tool_name, concat(", ", sort(missing_scopes))])

call_arguments := object.get(input, "arguments", {})

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

# Mistakes in data.tool_rules, by tool name. Typos must not silently drop a
# constraint, so calls to a tool with any of these are denied. A call checks
# only its own tool's rule (rule_mistakes of call_rule), so the cost of a
# decision does not grow with the number of rules.
rule_errors[name] := mistakes if {
	some name, rule in data.tool_rules
	mistakes := rule_mistakes(rule)
	count(mistakes) > 0
}

misconfigured if count(rule_mistakes(call_rule)) > 0

rule_mistakes(rule) := {"the rule must be an object"} if {
	not is_object(rule)
} else := union({
	{sprintf("unknown key %q", [key]) |
		some key, _ in rule
		not key in {"any_of", "anonymous", "call_scopes", "arguments"}
	},
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
})

# object_member is rule[key] when that is an object, else {}.
object_member(rule, key) := rule[key] if is_object(rule[key])

else := {}

string_array(x) if {
	is_array(x)
	every item in x {
		is_string(item)
	}
}
