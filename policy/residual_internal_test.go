package policy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

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

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkResidualFloor is what bounds a call decided by its residual
// (docs/performance.md, "What makes a call cheap"): the default policy's
// residual for a tool with an argument limit, evaluated as the engine
// does (through rego) and directly on OPA's topdown; the same checks
// written by hand as three rules, on topdown; and one constant rule
// through rego and on topdown, the floor of any evaluation. Each with new
// arguments every time.
func BenchmarkResidualFloor(b *testing.B) {
	dir := b.TempDir()
	for name, text := range map[string]string{
		"policy.rego": readFile(b, "../rego/policy.rego"),
		"data.json":   `{"tool_rules":{"tool_0000":{"arguments":{"text":{"max_length":100}}}}}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	e, err := New(Source{Dir: dir}, []Tool{{Name: "tool_0000"}}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	c := e.cur.Load()
	items, err := e.in.items(&idp.Principal{Sub: "u", Iss: "i", Provider: "auth0"}, ActionCall, "tool_0000")
	if err != nil {
		b.Fatal(err)
	}
	pq, err := c.partial.Partial(context.Background(), rego.EvalParsedInput(ast.NewObject(items...).Copy()))
	if err != nil {
		b.Fatal(err)
	}
	pq = copyPartial(pq)
	handWritten := ast.MustParseModule(`package r
default allow := false
allow if count(violations) == 0
default reason := ""
reason := concat("; ", sort(violations)) if count(violations) > 0
violations contains "argument \"text\" is longer than 100 characters" if { is_string(input.arguments.text); count(input.arguments.text) > 100 }
violations contains "argument \"text\" must be a string" if { input.arguments.text != null; not is_string(input.arguments.text) }`)
	constant := ast.MustParseModule("package r\nallow := true")
	for _, c := range []struct {
		name    string
		query   ast.Body
		modules []*ast.Module
		rego    bool
	}{
		{"residual/rego", pq.Queries[0], pq.Support, true},
		{"residual/topdown", pq.Queries[0], pq.Support, false},
		{"hand-written/topdown", ast.MustParseBody(decisionVar + ` = {"allow": data.r.allow, "reason": data.r.reason}`), []*ast.Module{handWritten}, false},
		{"constant/rego", ast.MustParseBody(decisionVar + " = data.r.allow"), []*ast.Module{constant}, true},
		{"constant/topdown", ast.MustParseBody(decisionVar + " = data.r.allow"), []*ast.Module{constant}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			modules := map[string]*ast.Module{}
			for i, m := range c.modules {
				modules[fmt.Sprint(i)] = m
			}
			compiler := ast.NewCompiler()
			if compiler.Compile(modules); compiler.Failed() {
				b.Fatal(compiler.Errors)
			}
			ctx := context.Background()
			store := inmem.New()
			var eval func(in ast.Value) error
			if c.rego {
				q, err := rego.New(rego.ParsedQuery(c.query), rego.Compiler(compiler), rego.Store(store), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
				if err != nil {
					b.Fatal(err)
				}
				eval = func(in ast.Value) error {
					rs, err := q.Eval(ctx, rego.EvalParsedInput(in))
					if err == nil && len(rs) != 1 {
						err = fmt.Errorf("%d results", len(rs))
					}
					return err
				}
			} else {
				body, err := compiler.QueryCompiler().Compile(c.query)
				if err != nil {
					b.Fatal(err)
				}
				txn, err := store.NewTransaction(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer store.Abort(ctx, txn)
				eval = func(in ast.Value) error {
					rs, err := topdown.NewQuery(body).WithCompiler(compiler).WithStore(store).WithTransaction(txn).
						WithInput(ast.NewTerm(in)).WithStrictBuiltinErrors(true).Run(ctx)
					if err == nil && len(rs) != 1 {
						err = fmt.Errorf("%d results", len(rs))
					}
					return err
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				args, err := argumentsValue(fmt.Appendf(nil, `{"text":"%d"}`, i))
				if err != nil {
					b.Fatal(err)
				}
				if err := eval(ast.NewObject(ast.Item(ast.InternedTerm("arguments"), ast.NewTerm(args)))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
