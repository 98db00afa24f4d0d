package policy

import (
	"os"
	"testing"

	"path/filepath"
)

// A call asks for its tool only when the type checker knows visible_tools
// to be a set of strings; any other visible_tools is computed whole and its
// type checked at evaluation, so that a wrong one denies.
func TestCallQuery(t *testing.T) {
	defaultPolicy, err := os.ReadFile("../rego/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	const byName, whole = "data.toolgate.internal.call_by_name", "data.toolgate.internal.call"
	for _, c := range []struct{ name, module, want string }{
		{"the default policy", string(defaultPolicy), byName},
		{"a partial set of catalog names", "package mcp.authz\nvisible_tools contains input.tools[_].name", byName},
		{"a set of string literals", `package mcp.authz
visible_tools := {"add", "whoami"}`, byName},
		{"a value from data", "package mcp.authz\nvisible_tools := data.visible", whole},
		{"a set with a number in it", `package mcp.authz
visible_tools := {"add", 1}`, whole},
		{"no visible_tools", "package mcp.authz\nallow := true", whole},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(c.module), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := New(Source{Dir: dir}, []Tool{{Name: "add"}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.cur.Load().callQuery; got != c.want {
				t.Errorf("call query = %s, want %s", got, c.want)
			}
		})
	}
}
