// Package policy asks the operator's Rego policies (package mcp.authz, run by
// embedded OPA) which tools a principal may see and call. A decision is a
// value with a reason, never a bare bool; any evaluation error denies.
//
// An Engine compiles a policy from a directory, the default policy embedded
// in the binary, or an OPA bundle, type-checked against the input the gate
// hands it (input.schema.json), and swaps in a new revision on reload only
// when it compiles: the last good policy keeps serving. Check and RunTests
// are `toolgate policy check` and `toolgate policy test`.
package policy
