# Argument rules: static limits on tool arguments, per organisation tier, with
# per-organisation overrides. No state: a limit bounds one call, it does not
# count calls (rates and usage quotas need a counter outside the policy).
#
# Operators edit data.json, not this file:
#
#   default_tier                 The tier of a principal whose org_id is not in
#                                organizations (or that has no org_id).
#   tiers.<tier>.<tool>          The tools of that tier: a tool without an entry
#                                is never visible. {} = no argument limits.
#     .<argument>                Limits on input.arguments.<argument>:
#       required                 true: it must be present and not null.
#       min_length, max_length   a string of at least / at most this many
#                                characters (Unicode code points, not bytes).
#       max_abs                  a number whose absolute value is at most this.
#                                Absent or null arguments are not checked
#                                unless required; a value of the wrong type is
#                                a violation.
#   organizations.<org_id>
#     tier                       Its tier (a key of tiers).
#     limits.<tool>.<argument>   Overrides, merged key by key over the tier's
#                                limits: change a limit, add one, or add a tool
#                                the tier does not have.
#
# A mistake in the limits (an unknown key, a value of the wrong type, a tier
# that does not exist) never widens access: the tool is denied to everyone it
# applies to. `opa eval -d examples/argument-rules data.mcp.authz.config_errors`
# lists the mistakes; the tests fail while there are any.
#
# Denials are checked in order: tool not visible, misconfigured limits,
# argument violations; reason is the first that applies. No denial here is a
# matter of scopes, so there is no required_scopes.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason.

default allow := false

# The catalog's names intersected with the tools of the principal's limits.
visible_tools := {name | name := input.tools[_].name} & {name | some name, _ in tier_limits}

allow if {
	is_call
	tool_name in visible_tools
	count(limit_errors(tool_limits)) == 0
	count(argument_violations) == 0
}

# The first denial that applies, each rule excluding the ones before it.
# (Not an else chain: OPA's partial evaluation, which lets the gate decide a
# call from its arguments alone, does not see through else, so a chain whose
# last step reads the arguments would be evaluated whole for every call.)
reason := sprintf("tier %q does not exist", [tier]) if {
	is_call
	missing_tier
}

reason := sprintf("tool %q is not available", [tool_name]) if {
	is_call
	not missing_tier
	not tool_name in visible_tools
}

reason := sprintf("tool %q is misconfigured", [tool_name]) if {
	callable
	misconfigured
}

reason := concat("; ", sort(argument_violations)) if {
	callable
	not misconfigured
	count(argument_violations) > 0
}

# Helpers.

# Anything that is not a principal of a real provider is treated as anonymous,
# and the anonymous principal gets no tier.
authenticated if {
	provider := input.principal.provider
	is_string(provider)
	not provider in {"", "anonymous"}
}

missing_tier if {
	authenticated
	not data.tiers[tier]
}

callable if {
	is_call
	not missing_tier
	tool_name in visible_tools
}

misconfigured if count(limit_errors(tool_limits)) > 0

organization := object.get(data.organizations, input.principal.org_id, {})

tier := object.get(organization, "tier", data.default_tier) if authenticated

# The principal's limits: its tier's, with its organisation's overrides.
# (Not named limits: that rule is the contract's rate limits.)
tier_limits := object.union(data.tiers[tier], object.get(organization, "limits", {}))

is_call if input.action == "tools/call"

# input.tool.name by its path, not object.get(input, ...): the caches key a
# principal by the fields of input.principal a policy names, and the whole
# input names every one.
default tool_name := ""

tool_name := input.tool.name

tool_limits := tier_limits[tool_name]

default call_arguments := {}

call_arguments := input.arguments

argument_violations contains sprintf("argument %q is required", [arg]) if {
	some arg, c in tool_limits
	c.required == true
	object.get(call_arguments, arg, null) == null
}

argument_violations contains sprintf("argument %q must be a string", [arg]) if {
	some arg, c in tool_limits
	some key in ["min_length", "max_length"]
	key in object.keys(c)
	value := call_arguments[arg]
	value != null
	not is_string(value)
}

argument_violations contains sprintf("argument %q is shorter than %s", [arg, characters(c.min_length)]) if {
	some arg, c in tool_limits
	value := call_arguments[arg]
	is_string(value)
	count(value) < c.min_length
}

argument_violations contains sprintf("argument %q is longer than %s", [arg, characters(c.max_length)]) if {
	some arg, c in tool_limits
	value := call_arguments[arg]
	is_string(value)
	count(value) > c.max_length
}

argument_violations contains sprintf("argument %q must be a number", [arg]) if {
	some arg, c in tool_limits
	"max_abs" in object.keys(c)
	value := call_arguments[arg]
	value != null
	not is_number(value)
}

argument_violations contains sprintf("argument %q exceeds %v in absolute value", [arg, c.max_abs]) if {
	some arg, c in tool_limits
	value := call_arguments[arg]
	is_number(value)
	abs(value) > c.max_abs
}

# "1 character", "100 characters".
characters(n) := "1 character" if {
	n == 1
} else := sprintf("%v characters", [n])

# Mistakes in the data. Typos must not silently drop a limit, so a tool whose
# limits have any of these is denied.

# The mistakes in one tool's limits.
limit_errors(rule) := {"the limits must be an object"} if {
	not is_object(rule)
} else := {msg |
	some arg, c in rule
	some msg in constraint_errors(arg, c)
}

constraint_errors(arg, c) := {sprintf("%s must be an object", [arg])} if {
	not is_object(c)
} else := {sprintf("%s.%s: %s is not a valid limit", [arg, key, json.marshal(value)]) |
	some key, value in c
	not valid_limit(key, value)
}

valid_limit("required", value) if is_boolean(value)

valid_limit(key, value) if {
	key in {"min_length", "max_length", "max_abs"}
	is_number(value)
	value >= 0
}

# Every mistake in data.default_tier, data.tiers and data.organizations.
config_errors contains "default_tier must name a tier" if {
	not data.tiers[data.default_tier]
}

config_errors contains sprintf("tiers.%s must be an object", [name]) if {
	some name, tools in data.tiers
	not is_object(tools)
}

config_errors contains sprintf("tiers.%s.%s: %s", [name, tool, msg]) if {
	some name, tools in data.tiers
	is_object(tools)
	some tool, rule in tools
	some msg in limit_errors(rule)
}

config_errors contains sprintf("organizations.%s must be an object", [org]) if {
	some org, o in data.organizations
	not is_object(o)
}

config_errors contains sprintf("organizations.%s: unknown key %q", [org, key]) if {
	some org, o in data.organizations
	is_object(o)
	some key, _ in o
	not key in {"tier", "limits"}
}

config_errors contains sprintf("organizations.%s.tier %q is not a tier", [org, o.tier]) if {
	some org, o in data.organizations
	not data.tiers[o.tier]
}

config_errors contains sprintf("organizations.%s.limits must be an object", [org]) if {
	some org, o in data.organizations
	overrides := o.limits
	not is_object(overrides)
}

config_errors contains sprintf("organizations.%s.limits.%s: %s", [org, tool, msg]) if {
	some org, o in data.organizations
	is_object(o.limits)
	some tool, rule in o.limits
	some msg in limit_errors(rule)
}
