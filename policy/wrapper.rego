# The gate's view of the operator's package mcp.authz: one document per
# question, with the contract's defaults, and an {"error": ...} object in
# place of a value of the wrong type so that the Go side fails closed on it.
package toolgate.internal

default visible := set()

visible := v if {
	v := data.mcp.authz.visible_tools
	is_set(v)
	every x in v {
		is_string(x)
	}
}

visible := {"error": "visible_tools must be a set of strings"} if {
	v := data.mcp.authz.visible_tools
	not is_set(v)
}

visible := {"error": "visible_tools must be a set of strings"} if {
	some x in data.mcp.authz.visible_tools
	not is_string(x)
}

default allow := false

allow := a if {
	a := data.mcp.authz.allow
	is_boolean(a)
}

allow := {"error": "allow must be a boolean"} if {
	a := data.mcp.authz.allow
	not is_boolean(a)
}

default reason := ""

reason := r if {
	r := data.mcp.authz.reason
	is_string(r)
}

reason := {"error": "reason must be a string"} if {
	r := data.mcp.authz.reason
	not is_string(r)
}

default required_scopes := set()

required_scopes := s if {
	s := data.mcp.authz.required_scopes
	is_set(s)
	every x in s {
		is_string(x)
	}
}

required_scopes := {"error": "required_scopes must be a set of strings"} if {
	s := data.mcp.authz.required_scopes
	not is_set(s)
}

required_scopes := {"error": "required_scopes must be a set of strings"} if {
	some x in data.mcp.authz.required_scopes
	not is_string(x)
}

# limits is read for an allowed call only; the Go side checks each
# object's fields (policy.Limit).
default limits := set()

limits := l if {
	l := data.mcp.authz.limits
	is_set(l)
	every x in l {
		is_object(x)
	}
}

limits := {"error": "limits must be a set of objects"} if {
	l := data.mcp.authz.limits
	not is_set(l)
}

limits := {"error": "limits must be a set of objects"} if {
	some x in data.mcp.authz.limits
	not is_object(x)
}

default tool_visible := false

tool_visible if {
	is_set(visible)
	input.tool.name in visible
}

tool_visible := visible if not is_set(visible)

call := {
	"visible": tool_visible,
	"allow": allow,
	"reason": reason,
	"required_scopes": required_scopes,
	"limits": limits,
}
