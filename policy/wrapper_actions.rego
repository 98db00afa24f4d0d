# The gate's view of the operator's rules for prompts and resources (issue
# 16; docs/policy-contract.md, "Prompts and resources"): visible_prompts and
# visible_resources with the contract's defaults (nothing visible), an
# {"error": ...} object in place of a value of the wrong type so that the Go
# side fails closed on it, and the decision on one prompts/get,
# resources/read, resources/subscribe or completion/complete.
package toolgate.internal

default visible_prompts := set()

visible_prompts := v if {
	v := data.mcp.authz.visible_prompts
	is_set(v)
	every x in v {
		is_string(x)
	}
}

visible_prompts := {"error": "visible_prompts must be a set of strings"} if {
	v := data.mcp.authz.visible_prompts
	not is_set(v)
}

visible_prompts := {"error": "visible_prompts must be a set of strings"} if {
	some x in data.mcp.authz.visible_prompts
	not is_string(x)
}

default visible_resources := set()

visible_resources := v if {
	v := data.mcp.authz.visible_resources
	is_set(v)
	every x in v {
		is_string(x)
	}
}

visible_resources := {"error": "visible_resources must be a set of strings"} if {
	v := data.mcp.authz.visible_resources
	not is_set(v)
}

visible_resources := {"error": "visible_resources must be a set of strings"} if {
	some x in data.mcp.authz.visible_resources
	not is_string(x)
}

# The prompt or resource of the action is visible: its name, its URI, or the
# URI template its URI matched, is in the visible set.
default target_visible := false

target_visible if {
	is_set(visible_prompts)
	input.prompt.name in visible_prompts
}

target_visible if {
	is_set(visible_resources)
	input.resource.uri in visible_resources
}

target_visible if {
	is_set(visible_resources)
	input.resource.uri_template != ""
	input.resource.uri_template in visible_resources
}

target_visible := visible_prompts if {
	input.prompt
	not is_set(visible_prompts)
}

target_visible := visible_resources if {
	input.resource
	not is_set(visible_resources)
}

action := {
	"visible": target_visible,
	"allow": allow,
	"reason": reason,
}
