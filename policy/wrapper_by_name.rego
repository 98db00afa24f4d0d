# call_by_name is the wrapper's call for a visible_tools the type checker
# knows to be a set of strings (the engine adds this module only then): it
# asks for the called tool only, so that a partial set rule checks that one
# tool instead of computing the whole set.
package toolgate.internal

default listed := false

listed if data.mcp.authz.visible_tools[input.tool.name]

call_by_name := {
	"visible": listed,
	"allow": allow,
	"reason": reason,
	"required_scopes": required_scopes,
	"limits": limits,
}
