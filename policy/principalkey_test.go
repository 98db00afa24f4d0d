package policy_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// A policy that lets only alice in, however it reads her name: with the
// caches warm from one of alice and bob, the other still gets her own
// answer. Alice and bob differ in nothing but the field the policy reads, so
// a key that left it out would hand the second the first's decisions.
func TestCacheKeyHoldsWhatThePolicyReads(t *testing.T) {
	t.Parallel()
	principal := func(sub, email string) *idp.Principal {
		return &idp.Principal{Sub: sub, Iss: "https://issuer.example/", Provider: "auth0",
			Scopes: []string{}, Permissions: []string{}, Roles: []string{},
			Claims: map[string]any{"email": email, "jti": "same"}}
	}
	const head = "package mcp.authz\n\nvisible_tools contains t.name if {\n\tsome t in input.tools\n\talice\n}\n\nallow if alice\n\n"
	for _, c := range []struct {
		name, alice string // alice: the rule that says the caller is alice
		bob         *idp.Principal
	}{
		{"sub", `alice if input.principal.sub == "alice"`, principal("bob", "a@example.com")},
		{"a claim", `alice if input.principal.claims.email == "a@example.com"`, principal("alice", "b@example.com")},
		{"every claim", `alice if { some k; input.principal.claims[k] == "a@example.com" }`, principal("alice", "b@example.com")},
		{"a variable key", `alice if { some k; k == "sub"; input.principal[k] == "alice" }`, principal("bob", "a@example.com")},
		{"object.get of the input", `alice if object.get(input, ["principal", "sub"], "") == "alice"`, principal("bob", "a@example.com")},
		{"walk of the input", `alice if walk(input, [["principal", "sub"], "alice"])`, principal("bob", "a@example.com")},
		{"json.marshal of the input", `alice if contains(json.marshal(input), "\"sub\":\"alice\"")`, principal("bob", "a@example.com")},
		{"input.principal as a value", `alice if { p := input.principal; p.sub == "alice" }`, principal("bob", "a@example.com")},
		{"a function given the principal", "alice if named(input.principal)\n\nnamed(p) if p.sub == \"alice\"", principal("bob", "a@example.com")},
		{"with", "alice if is_alice with input.principal.provider as \"auth0\"\n\nis_alice if input.principal.sub == \"alice\"", principal("bob", "a@example.com")},
	} {
		alice := principal("alice", "a@example.com")
		dir := policyDir(t, map[string]string{"policy.rego": head + c.alice + "\n"})
		for i, order := range [][]*idp.Principal{{alice, c.bob}, {c.bob, alice}} {
			t.Run(fmt.Sprintf("%s/%s first", c.name, []string{"alice", "bob"}[i]), func(t *testing.T) {
				t.Parallel()
				e := mustNew(t, policy.Source{Dir: dir}, defaultCatalog, policy.Options{Logger: quietLogger()})
				ctx := context.Background()
				for range 2 { // the second round from the caches
					for _, p := range order {
						isAlice := p == alice
						if got := len(visibleNames(t, e, p)); (got == len(defaultCatalog)) != isAlice || (got == 0) == isAlice {
							t.Errorf("%s (%s) sees %d tools", p.Sub, p.Claims["email"], got)
						}
						if d := e.DecideRaw(ctx, p, "add", []byte(`{"a":1,"b":2}`)); d.Err != nil || d.Allowed != isAlice {
							t.Errorf("%s (%s) calls add: %+v", p.Sub, p.Claims["email"], d)
						}
					}
				}
			})
		}
	}
}

// What the caches leave out of the key is what no evaluation reads: for the
// default policy and every example, a principal and its twin that differs
// only in the fields the key leaves out get the same visible tools and the
// same decisions from a full evaluation (no cache).
func TestUnreadPrincipalFieldsDecideNothing(t *testing.T) {
	t.Parallel()
	for _, dir := range fastPathPolicies(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			e := mustNew(t, policy.Source{Dir: dir}, fastPathCatalog, policy.Options{Logger: quietLogger()})
			paths, whole := policy.PrincipalPaths(e)
			if whole {
				t.Skip("keyed by the whole principal: no field is left out")
			}
			full := mustNew(t, policy.Source{Dir: dir}, fastPathCatalog, policy.Options{Logger: quietLogger(), CacheSize: -1})
			r := rand.New(rand.NewPCG(17, 2))
			ctx := context.Background()
			for range 20 {
				p := fastPathPrincipal(r.Uint64())
				twin := unreadTwin(p, paths, r)
				if a, b := visibleNames(t, full, p), visibleNames(t, full, twin); !slices.Equal(a, b) {
					t.Errorf("%s sees %q, its twin %s %q", p.Input(), a, twin.Input(), b)
				}
				for _, tool := range fastPathTools {
					args := fastPathArguments[r.IntN(len(fastPathArguments))]
					a, b := full.DecideRaw(ctx, p, tool, []byte(args)), full.DecideRaw(ctx, twin, tool, []byte(args))
					if summary(a) != summary(b) {
						t.Errorf("%s calls %s with %.40s:\n%s\nits twin %s:\n%s", p.Input(), tool, args, summary(a), twin.Input(), summary(b))
					}
				}
			}
		})
	}
}

// unreadTwin is p with every field of input.principal that no path of
// paths names changed; the values at the paths are kept.
func unreadTwin(p *idp.Principal, paths [][]string, r *rand.Rand) *idp.Principal {
	read := func(field string) bool {
		return slices.ContainsFunc(paths, func(path []string) bool { return path[0] == field })
	}
	word := func() string { return fmt.Sprintf("twin-%d", r.Uint32()) }
	twin := *p
	for field, change := range map[string]func(){
		"sub":         func() { twin.Sub = word() },
		"iss":         func() { twin.Iss = word() },
		"client_id":   func() { twin.ClientID = word() },
		"provider":    func() { twin.Provider = word() },
		"org_id":      func() { twin.OrgID = word() },
		"scopes":      func() { twin.Scopes = append(slices.Clone(twin.Scopes), word()) },
		"permissions": func() { twin.Permissions = append(slices.Clone(twin.Permissions), word()) },
		"roles":       func() { twin.Roles = append(slices.Clone(twin.Roles), word()) },
	} {
		if !read(field) {
			change()
		}
	}
	if !slices.ContainsFunc(paths, func(path []string) bool { return len(path) == 1 && path[0] == "claims" }) {
		// New claims but those at the paths read.
		claims := map[string]any{"jti": word(), "sub": word(), "email": word() + "@example.com"}
		for _, path := range paths {
			if path[0] == "claims" {
				copyAt(claims, p.Claims, path[1:])
			}
		}
		twin.Claims = claims
	}
	return &twin
}

// copyAt makes the value at path in to what it is in from: the same
// value, or absent. A value on the way that is not an object is copied
// whole.
func copyAt(to, from map[string]any, path []string) {
	for i, k := range path {
		v, ok := from[k]
		if !ok {
			delete(to, k)
			return
		}
		next, isObject := v.(map[string]any)
		if i == len(path)-1 || !isObject {
			to[k] = v
			return
		}
		sub, ok := to[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
		} else {
			sub = maps.Clone(sub)
		}
		to[k], to, from = sub, sub, next
	}
}
