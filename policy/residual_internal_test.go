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

// A decision that depends on the arguments is decided by the residual of
// partial evaluation, compiled on its own, where the residual reads only
// the arguments and rules partial evaluation wrote: for the default
// policy's argument limits, a limits rule keyed by an argument, and the
// examples that decide on the arguments. Each decision of the residual
// equals a full evaluation's. Where the residual reads more (a rule of the
// policy, the whole input), calls are evaluated in full.
func TestResidualDecisions(t *testing.T) {
	t.Parallel()
	catalog := []Tool{{Name: "add"}, {Name: "whoami"}, {Name: "image_generation", Annotations: map[string]any{"openWorldHint": true}},
		{Name: "list_okrs"}, {Name: "update_kr"},
		{Name: "fs_write", Server: "fs", Annotations: map[string]any{"readOnlyHint": false}}}
	imager := &idp.Principal{Sub: "u", Iss: "i", Provider: "auth0", OrgID: "org_acme", Permissions: []string{"image_generation"}, Scopes: []string{"images:write"}}
	stepUp := &idp.Principal{Sub: "u", Iss: "i", Provider: "auth0", Permissions: []string{"image_generation"}}
	member := &idp.Principal{Sub: "u", Iss: "i", Provider: "stytch", OrgID: "org_acme", Scopes: []string{"read:okrs", "manage:krs"}}
	defaultPolicy := readFile(t, "../rego/policy.rego")
	fsData := `{"server_rules": {"fs": {"any_of": {"permissions": ["image_generation"]}, "arguments": {"x": {"maximum": 3, "required": true}}}}}`
	arguments := []string{``, `{}`, `{"prompt":"a cat"}`, `{"prompt":""}`, `{"prompt":5}`, `{"prompt":"` + string(make([]byte, 1001)) + `"}`,
		`{"a":1,"b":2}`, `{"a":2000,"b":1}`, `{"x":3}`, `{"x":4}`, `{"x":"3"}`, `{"organization_id":"org_acme"}`,
		`{"kr":{"organization_id":"org_other"}}`, `{"x":1,"y":true}`, `{"y":true}`, `[1]`}
	for _, c := range []struct {
		name  string
		files map[string]string // a policy's files, or dir
		dir   string
		tool  string
		p     *idp.Principal
		want  verdict
	}{
		{"default policy, a rule with argument limits", nil, "../rego", "image_generation", imager, verdictResidual},
		{"default policy, argument limits behind a missing call scope", nil, "../rego", "image_generation", stepUp, verdictFree},
		{"default policy, a server rule with argument limits", map[string]string{"policy.rego": defaultPolicy, "data.json": fsData}, "", "fs_write", imager, verdictResidual},
		{"limits keyed by an argument", nil, "testdata/limits", "image_generation", imager, verdictResidual},
		{"argument-rules, limits of the organisation's tier", nil, "../examples/argument-rules", "image_generation", imager, verdictResidual},
		{"stytch-b2b, the organisation of the arguments", nil, "../examples/stytch-b2b", "update_kr", member, verdictResidual},
		{"an else chain after a step partial evaluation decides", map[string]string{"policy.rego": "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\nreason := \"a\" if input.tool.name == \"x\"\nelse := \"b\" if input.arguments.y"}, "", "add", imager, verdictResidual},
		{"an else chain reading the arguments first", map[string]string{"policy.rego": "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\nreason := \"a\" if input.arguments.x == 1\nelse := \"b\" if input.arguments.y"}, "", "add", imager, verdictFull},
		{"the whole input passed to a function", map[string]string{"policy.rego": "package mcp.authz\nvisible_tools := {\"add\"}\nallow if object.get(input, [\"arguments\", \"a\"], 0) == 1"}, "", "add", imager, verdictFull},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := c.dir
			if dir == "" {
				dir = t.TempDir()
				for name, text := range c.files {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			opts := Options{Logger: slog.New(slog.DiscardHandler)}
			e, err := New(Source{Dir: dir}, catalog, opts)
			if err != nil {
				t.Fatal(err)
			}
			opts.CacheSize = -1
			full, err := New(Source{Dir: dir}, catalog, opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			_ = e.DecideRaw(ctx, c.p, c.tool, []byte(`{}`))
			cur := e.cur.Load()
			tk := cur.toolKey(c.p, c.tool)
			if v, _ := cur.verdicts.Get(tk); v != c.want {
				t.Fatalf("verdict %d, want %d", v, c.want)
			}
			q, _ := cur.residualQueries.Get(tk)
			if (q != nil) != (c.want == verdictResidual) {
				t.Fatalf("compiled residual %v, want one: %v", q != nil, c.want == verdictResidual)
			}
			for _, args := range arguments {
				want := summarize(full.DecideRaw(ctx, c.p, c.tool, []byte(args)))
				if got := summarize(e.DecideRaw(ctx, c.p, c.tool, []byte(args))); got != want {
					t.Errorf("%s: decided %s, a full evaluation %s", args, got, want)
				}
				if q == nil {
					continue
				}
				d, ok := e.evaluateResidual(ctx, cur, "id", q, []byte(args))
				if !ok {
					t.Errorf("%s: the residual did not decide", args)
				} else if got := summarize(d); got != want {
					t.Errorf("%s: the residual decided %s, a full evaluation %s", args, got, want)
				}
			}
		})
	}
}

func summarize(d Decision) string {
	return fmt.Sprintf("visible=%v allowed=%v reason=%q scopes=%q limits=%v err=%v", d.Visible, d.Allowed, d.Reason, d.RequiredScopes, d.Limits, d.Err)
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
