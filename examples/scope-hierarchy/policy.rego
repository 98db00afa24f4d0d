# Scope hierarchies: a broad scope implies narrower ones (images:admin implies
# images:write), and a denied call's challenge names the smallest scopes that
# permit it, all in one (MCP authorization, scope challenge handling).
#
# Operators edit data.json, not this file:
#
#   scope_implies.<scope>      [..]: scopes that <scope> implies. Implications
#                              chain: mcp:admin -> images:admin -> images:write
#                              -> images:read. A token holds every scope it
#                              carries and every scope those imply.
#   tools.<tool>               A tool with no entry is never visible (deny by
#                              default). {} = every authenticated principal.
#     list                     [..]: scopes needed to SEE the tool, all of them.
#     call                     [..]: scopes needed to CALL it, all of them, on
#                              top of list. One missing: the call is denied
#                              with required_scopes (step-up: 403
#                              insufficient_scope).
#
# required_scopes is the smallest set of scopes that together satisfy every
# requirement of the call (list and call), the ones the token already holds
# included: a client that re-authorizes with the challenged scopes alone (as
# some SDKs do) then gets a token that permits the call. "Smallest" means
# least privilege: a requirement is left out only when another requirement
# implies it (images:write covers images:read); a broad scope never replaces
# two narrow ones.
#
# A mistake in a tool's entry (an unknown key, a value of the wrong type)
# hides the tool, one in scope_implies hides every tool. `opa eval -d
# examples/scope-hierarchy data.mcp.authz.rule_errors` (and
# data.mcp.authz.implication_errors) lists the mistakes; the tests fail while
# there are any.
#
# Denials are checked in order: tool not visible (or misconfigured), missing
# scopes; reason is the first that applies.
package mcp.authz

# Rules read by the gate: visible_tools, allow, reason, required_scopes.

default allow := false

# The catalog's names intersected with the tools the scopes grant.
visible_tools := {name | name := input.tools[_].name} & granted_tools

allow if {
	is_call
	tool_name in visible_tools
	count(unsatisfied) == 0
}

reason := sprintf("tool %q is misconfigured", [tool_name]) if {
	is_call
	tool_name in catalog_names
	rule_errors[tool_name]
} else := sprintf("tool %q is not available", [tool_name]) if {
	is_call
	not tool_name in visible_tools
} else := sprintf("tool %q requires %s", [tool_name, listing("scope", minimal(unsatisfied))]) if {
	is_call
	count(unsatisfied) > 0
}

required_scopes := minimal(requirements) if {
	is_call
	tool_name in visible_tools
	count(unsatisfied) > 0
}

# Helpers.

# Anything that is not a principal of a real provider is treated as anonymous,
# and the anonymous principal sees nothing.
authenticated if {
	provider := input.principal.provider
	is_string(provider)
	not provider in {"", "anonymous"}
}

principal_scopes := {s | some s in input.principal.scopes}

# data.scope_implies with every implied scope as a vertex too, so that
# graph.reachable follows chains through scopes that imply nothing.
scope_graph := object.union({s: [] | some implied in data.scope_implies; some s in implied}, data.scope_implies)

# The scopes the principal holds, directly or by implication.
effective_scopes := principal_scopes | graph.reachable(scope_graph, principal_scopes)

satisfied(scope) if scope in effective_scopes

granted_tools contains name if {
	authenticated
	count(implication_errors) == 0
	some name, rule in data.tools
	not rule_errors[name]
	every s in object.get(rule, "list", []) {
		satisfied(s)
	}
}

catalog_names := {name | name := input.tools[_].name}

is_call if input.action == "tools/call"

# input.tool.name by its path, not object.get(input, ...): the caches key a
# principal by the fields of input.principal a policy names, and the whole
# input names every one.
default tool_name := ""

tool_name := input.tool.name

call_rule := data.tools[tool_name] if is_call

# Every scope the call needs: to see the tool and to call it.
requirements := {s | some key in ["list", "call"]; some s in object.get(call_rule, key, [])}

unsatisfied := {s | some s in requirements; not satisfied(s)}

# The scopes of a set that no other scope of the set strictly implies: the
# least privileged scopes that together imply the whole set.
minimal(scopes) := {s | some s in scopes; not strictly_implied(s, scopes)}

strictly_implied(s, scopes) if {
	some t in scopes
	s in graph.reachable(scope_graph, {t})
	not t in graph.reachable(scope_graph, {s})
}

# "scope a" or "scopes a, b".
listing(word, items) := sprintf("%s %s", [word, concat(", ", sort(items))]) if {
	count(items) == 1
} else := sprintf("%ss %s", [word, concat(", ", sort(items))])

# Mistakes in data.tools, by tool name. Typos must not silently drop a
# requirement, so a tool with any of these is hidden.
rule_errors[name] contains "the rule must be an object" if {
	some name, rule in data.tools
	not is_object(rule)
}

rule_errors[name] contains sprintf("unknown key %q", [key]) if {
	some name, rule in data.tools
	is_object(rule)
	some key, _ in rule
	not key in {"list", "call"}
}

rule_errors[name] contains sprintf("%s must be an array of strings", [key]) if {
	some name, rule in data.tools
	is_object(rule)
	some key in ["list", "call"]
	not string_array(object.get(rule, key, []))
}

# Mistakes in data.scope_implies. With any of these, the hierarchy cannot be
# evaluated and nothing is visible.
implication_errors contains "scope_implies must be an object" if {
	not is_object(data.scope_implies)
}

implication_errors contains sprintf("scope_implies.%s must be an array of strings", [scope]) if {
	is_object(data.scope_implies)
	some scope, implied in data.scope_implies
	not string_array(implied)
}

string_array(x) if {
	is_array(x)
	every item in x {
		is_string(item)
	}
}
