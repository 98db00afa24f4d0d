package policy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/idp"
)

// Partial evaluation tells apart the decisions that hold for every argument
// value from those that read the arguments, per principal and tool; the
// first are cached once for all argument values.
func TestArgumentFreeDecisions(t *testing.T) {
	t.Parallel()
	defaultPolicy, err := os.ReadFile("../rego/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	defaultData, err := os.ReadFile("../rego/data.json")
	if err != nil {
		t.Fatal(err)
	}
	// Readers see fs's read-only tools, editors all of them, and holders of
	// image_generation the others, with a limit on an argument.
	fsData := `{"server_rules": {"fs": [
		{"any_of": {"roles": ["reader"]}, "annotations": {"readOnlyHint": true}},
		{"any_of": {"roles": ["editor"]}},
		{"any_of": {"permissions": ["image_generation"]}, "annotations": {"readOnlyHint": false}, "arguments": {"x": {"maximum": 3}}}
	]}}`
	imager := &idp.Principal{Sub: "u", Provider: "auth0", Permissions: []string{"image_generation"}, Scopes: []string{"images:write"}}
	for _, c := range []struct {
		name, module, data, tool string
		p                        *idp.Principal
		want                     bool
	}{
		{"default policy, a rule without argument limits", string(defaultPolicy), string(defaultData), "add", imager, true},
		{"default policy, a rule with argument limits", string(defaultPolicy), string(defaultData), "image_generation", imager, false},
		{"default policy, argument limits of a tool the principal may not see", string(defaultPolicy), string(defaultData), "image_generation",
			&idp.Principal{Sub: "u", Provider: "auth0"}, true},
		{"default policy, a tool of no catalog", string(defaultPolicy), string(defaultData), "nope", imager, true},
		{"default policy, a server rule without argument limits", string(defaultPolicy), fsData, "fs_read",
			&idp.Principal{Sub: "u", Provider: "auth0", Roles: []string{"editor"}}, true},
		{"default policy, a server rule with argument limits", string(defaultPolicy), fsData, "fs_write", imager, false},
		{"default policy, a server rule that does not apply to the tool", string(defaultPolicy), fsData, "fs_write",
			&idp.Principal{Sub: "u", Provider: "auth0", Roles: []string{"reader"}}, true},
		{"allow reads an argument", "package mcp.authz\nvisible_tools := {\"add\"}\nallow if input.arguments.x == 1", "{}", "add", imager, false},
		{"reason reads an argument", "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\nreason := sprintf(\"%v\", [input.arguments])", "{}", "add", imager, false},
		{"the whole input passed to a function", "package mcp.authz\nvisible_tools := {\"add\"}\nallow if object.get(input, [\"tool\", \"name\"], \"\") == \"add\"", "{}", "add", imager, false},
		{"an else chain reading the arguments", "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\nreason := \"a\" if input.tool.name == \"x\"\nelse := \"b\" if input.arguments.y", "{}", "add", imager, false},
		{"arguments not read", "package mcp.authz\nvisible_tools := {\"add\"}\nallow if input.principal.sub == \"u\"", "{}", "add", imager, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, text := range map[string]string{"policy.rego": c.module, "data.json": c.data} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e, err := New(Source{Dir: dir}, []Tool{{Name: "add"}, {Name: "whoami"}, {Name: "image_generation"},
				{Name: "fs_read", Server: "fs", Annotations: map[string]any{"readOnlyHint": true}},
				{Name: "fs_write", Server: "fs", Annotations: map[string]any{"readOnlyHint": false}}},
				Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			first := e.DecideRaw(ctx, c.p, c.tool, []byte(`{"x":1}`))
			for i := range 4 {
				d := e.DecideRaw(ctx, c.p, c.tool, fmt.Appendf(nil, `{"x":%d,"y":true}`, i+2))
				if d.Err != nil {
					t.Fatal(d.Err)
				}
				if c.want && (d.Allowed != first.Allowed || d.Reason != first.Reason) {
					t.Errorf("an argument-free decision changed with the arguments: %+v, then %+v", first, d)
				}
			}
			if got := e.cur.Load().calls.Len(); (got == 1) != c.want {
				t.Errorf("five calls with five argument values left %d cached decisions; want one exactly when the decision is free of the arguments (%v)", got, c.want)
			}
		})
	}
}
