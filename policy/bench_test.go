package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// benchEngine is the default policy (../rego/policy.rego) over a synthetic
// catalog of n tools, with a data.json whose rules grant every authenticated
// principal the even-numbered half of them and the other half only to a
// permission the benchmark's principal lacks.
//
// cacheSize is Options.CacheSize: 0 for the default caches, -1 for none.
func benchEngine(b *testing.B, n, cacheSize int) *policy.Engine {
	b.Helper()
	module, err := os.ReadFile(filepath.Join(defaultDir, "policy.rego"))
	if err != nil {
		b.Fatal(err)
	}
	catalog := make([]policy.Tool, n)
	rules := map[string]any{}
	for i := range n {
		name := fmt.Sprintf("tool_%04d", i)
		catalog[i] = policy.Tool{
			Name:        name,
			Description: "synthetic tool " + name,
			Annotations: map[string]any{"readOnlyHint": i%3 == 0},
		}
		if i%2 == 0 {
			rules[name] = map[string]any{"arguments": map[string]any{"text": map[string]any{"max_length": 100}}}
		} else {
			rules[name] = map[string]any{"any_of": map[string]any{"permissions": []string{"odd_tools"}}}
		}
	}
	data, err := json.Marshal(map[string]any{"tool_rules": rules, "role_permissions": map[string]any{}})
	if err != nil {
		b.Fatal(err)
	}
	dir := policyDir(b, map[string]string{"policy.rego": string(module), "data.json": string(data)})
	e := mustNew(b, policy.Source{Dir: dir}, catalog, policy.Options{CacheSize: cacheSize})
	set, err := e.Visible(context.Background(), user(nil, nil))
	if err != nil || len(set) != n/2 {
		b.Fatalf("Visible: %d tools (want %d), %v", len(set), n/2, err)
	}
	return e
}

// caches are the two settings benchmarked: the default decision caches (a
// repeated question is a cache hit) and none (every call evaluates the
// policy).
var caches = []struct {
	name string
	size int
}{{"cache=on", 0}, {"cache=off", -1}}

func BenchmarkVisible(b *testing.B) {
	for _, n := range []int{50, 1000} {
		for _, c := range caches {
			b.Run(fmt.Sprintf("tools=%d/%s", n, c.name), func(b *testing.B) {
				e := benchEngine(b, n, c.size)
				p := user([]string{"unrelated"}, []string{"openid"})
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.Visible(ctx, p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVisibleNewPrincipal: a first tools/list of a new user, whose
// grants (all the default policy reads of a principal) match an earlier
// user's, over 1000 tools: each iteration a new sub and a new token id.
func BenchmarkVisibleNewPrincipal(b *testing.B) {
	e := benchEngine(b, 1000, 0)
	ctx := context.Background()
	if _, err := e.Visible(ctx, user([]string{"unrelated"}, []string{"openid"})); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		p := user([]string{"unrelated"}, []string{"openid"})
		p.Sub = fmt.Sprintf("user-%d", i)
		p.Claims = map[string]any{"sub": p.Sub, "jti": fmt.Sprint(i)}
		if _, err := e.Visible(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVisibleNewGrants: a first tools/list of a user whose grants no
// earlier one had (each iteration a permission never seen, and every other
// one the permission the odd-numbered tools need), decided from the list
// residual of partial evaluation (made once per policy and catalog).
func BenchmarkVisibleNewGrants(b *testing.B) {
	for _, n := range []int{50, 1000} {
		b.Run(fmt.Sprintf("tools=%d", n), func(b *testing.B) {
			e := benchEngine(b, n, 0)
			if !e.WaitListResidual(context.Background()) {
				b.Fatal("no list residual")
			}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				perms := []string{fmt.Sprintf("permission-%d", i)}
				if i%2 == 0 {
					perms = append(perms, "odd_tools")
				}
				set, err := e.Visible(ctx, user(perms, []string{"openid"}))
				if err != nil || len(set) != n/2+(n/2)*(1-i%2) {
					b.Fatalf("Visible: %d tools, %v", len(set), err)
				}
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{50, 1000} {
		for _, c := range caches {
			b.Run(fmt.Sprintf("tools=%d/%s", n, c.name), func(b *testing.B) {
				e := benchEngine(b, n, c.size)
				p := user([]string{"unrelated"}, []string{"openid"})
				args := map[string]any{"text": "hello"}
				if d := e.Decide(ctx, p, "tool_0000", args); !d.Allowed {
					b.Fatalf("Decide = %+v, want allowed", d)
				}
				b.ReportAllocs()
				for b.Loop() {
					if d := e.Decide(ctx, p, "tool_0000", args); d.Err != nil {
						b.Fatal(d.Err)
					}
				}
			})
		}
	}
	// Arguments that differ on every call (a prompt, a query) miss the
	// decision cache, which is keyed by them: each call evaluates.
	for _, n := range []int{50, 1000} {
		b.Run(fmt.Sprintf("tools=%d/cache=on/distinct-args", n), func(b *testing.B) {
			e := benchEngine(b, n, 0)
			p := user([]string{"unrelated"}, []string{"openid"})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if d := e.Decide(ctx, p, "tool_0000", map[string]any{"text": fmt.Sprint(i)}); d.Err != nil || !d.Allowed {
					b.Fatal(d)
				}
			}
		})
	}
	for _, c := range caches {
		b.Run("default policy step-up/"+c.name, func(b *testing.B) {
			e := mustNew(b, policy.Source{Dir: defaultDir}, defaultCatalog, policy.Options{CacheSize: c.size})
			p := user([]string{"image_generation"}, nil)
			args := map[string]any{"prompt": "a cat"}
			if d := e.Decide(ctx, p, "image_generation", args); d.Allowed || len(d.RequiredScopes) != 1 {
				b.Fatalf("Decide = %+v, want a step-up", d)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := e.Decide(ctx, p, "image_generation", args); d.Err != nil {
					b.Fatal(d.Err)
				}
			}
		})
	}
}

// BenchmarkDecideFreshArguments: a new arguments value on every call, the
// same principal, the default caches. A tool whose rule has no argument
// limits is decided once for every argument value (a lookup); one with
// limits (data.tool_rules.<tool>.arguments) is decided for each call by
// the residual of partial evaluation, on the arguments alone.
func BenchmarkDecideFreshArguments(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{50, 1000} {
		for _, c := range []struct{ name, tool string }{
			{"no-argument-limits", "tool_0001"}, // any_of permissions odd_tools
			{"argument-limits", "tool_0000"},    // arguments.text.max_length
		} {
			b.Run(fmt.Sprintf("tools=%d/%s", n, c.name), func(b *testing.B) {
				e := benchEngine(b, n, 0)
				p := user([]string{"odd_tools"}, []string{"openid"})
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					if d := e.DecideRaw(ctx, p, c.tool, fmt.Appendf(nil, `{"text":"%d"}`, i)); d.Err != nil || !d.Allowed {
						b.Fatal(d)
					}
				}
			})
		}
	}
}

// NewID runs once per decision, cached or not.
func BenchmarkNewID(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = policy.NewID()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = policy.NewID()
			}
		})
	})
}

// BenchmarkPolicies is what a call costs under the default policy and each
// policy of examples/ (make bench prints each): a decision for a principal
// who holds every permission, scope and role they grant on, of each tool of
// their catalogs, with arguments new on every call (so the cache helps only
// where the decision is free of them), and a first tools/list (no cache).
func BenchmarkPolicies(b *testing.B) {
	ctx := context.Background()
	p := &idp.Principal{Provider: "auth0", Sub: "user-1", Iss: "https://issuer.example/", OrgID: "org-1",
		Permissions: fastPathPermissions, Scopes: fastPathScopes, Roles: fastPathRoles, Claims: map[string]any{"sub": "user-1"}}
	for _, dir := range fastPathPolicies(b) {
		name := filepath.Base(dir)
		if dir == defaultDir {
			name = "default"
		}
		b.Run(name+"/call-fresh-arguments", func(b *testing.B) {
			e := mustNew(b, policy.Source{Dir: dir}, fastPathCatalog, policy.Options{})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				tool := fastPathCatalog[i%len(fastPathCatalog)].Name
				_ = e.DecideRaw(ctx, p, tool, fmt.Appendf(nil, `{"prompt":"p%d","a":%d,"b":1}`, i, i))
			}
		})
		b.Run(name+"/first-list", func(b *testing.B) {
			e := mustNew(b, policy.Source{Dir: dir}, fastPathCatalog, policy.Options{CacheSize: -1})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Visible(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
