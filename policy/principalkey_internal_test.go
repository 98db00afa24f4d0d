package policy

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/idp"
)

// The caches key the principal by the paths under input.principal the
// policy names, or by the whole principal when it reads the input in a way
// no path names.
func TestReadPrincipal(t *testing.T) {
	t.Parallel()
	const head = "package mcp.authz\n\nvisible_tools := {\"add\"}\n\n"
	for _, c := range []struct {
		name, body, want string
	}{
		{"paths", `allow if {
	input.principal.provider == "auth0"
	"a" in input.principal.scopes
	input.principal.scopes[0] == "a"
}`, "provider, scopes"},
		{"a claim", `allow if input.principal.claims.email == "alice@example.com"`, "claims.email"},
		{"a claim and the claims", `allow if input.principal.claims.email == "a"
reason := input.principal.claims[k] if k := "x"`, "claims"},
		{"a key read from the principal", `allow if input.principal.claims[input.principal.sub] == true`, "claims, sub"},
		{"no principal", `allow if input.tool.name == "add"`, ""},
		{"a function's argument", `f(x) := x.sub
allow if f(input.principal) == "alice"`, "whole principal"},
		{"input.principal as a value", `allow if { p := input.principal; p.sub == "alice" }`, "whole principal"},
		{"object.get of the input", `allow if object.get(input, ["principal", "sub"], "") == "alice"`, "whole principal"},
		{"walk of the input", `allow if walk(input, [["principal", "sub"], "alice"])`, "whole principal"},
		{"json.marshal of the input", `allow if contains(json.marshal(input), "alice")`, "whole principal"},
		{"a variable key of the input", `allow if { some k; input[k].sub == "alice" }`, "whole principal"},
		{"a variable key of the principal", `allow if { some k; input.principal[k] == "alice" }`, "whole principal"},
		{"a computed key of the principal", `allow if input.principal[concat("", ["s", "ub"])] == "alice"`, "whole principal"},
		{"with input", `alice if input.principal.provider == "auth0"
allow if alice with input.principal.provider as "auth0"`, "whole principal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := engineOf(t, head+c.body+"\n")
			if got := e.cur.Load().callPrincipal.String(); got != c.want {
				t.Errorf("key = %q, want %q", got, c.want)
			}
		})
	}
	t.Run("only what the query reaches", func(t *testing.T) {
		e := engineOf(t, "package mcp.authz\n\nvisible_tools := {\"add\"} if \"a\" in input.principal.scopes\n\nallow if input.principal.sub == \"alice\"\n")
		if got, want := e.cur.Load().listPrincipal.String(), "scopes"; got != want {
			t.Errorf("list key = %q, want %q", got, want)
		}
		// A call's decision says whether the tool is visible too.
		if got, want := e.cur.Load().callPrincipal.String(), "scopes, sub"; got != want {
			t.Errorf("call key = %q, want %q", got, want)
		}
	})
	t.Run("default policy", func(t *testing.T) {
		// The list reads the grants; a call also reads who the principal
		// is, for the rate limits' keys.
		e := engineOf(t, "")
		if got, want := e.cur.Load().listPrincipal.String(), "permissions, provider, roles, scopes"; got != want {
			t.Errorf("list key = %q, want %q", got, want)
		}
		if got, want := e.cur.Load().callPrincipal.String(), "client_id, iss, org_id, permissions, provider, roles, scopes, sub"; got != want {
			t.Errorf("call key = %q, want %q", got, want)
		}
	})
}

// Tokens of principals who differ only in what a query does not read share
// its cache entries: under the default policy, alice's two tokens and bob
// (the same grants) share one visible set, and alice's two tokens one
// decision (a call reads sub, for the rate limits' keys); a policy that
// reads sub everywhere keeps alice and bob apart in both.
func TestCacheSharedAcrossUnreadFields(t *testing.T) {
	t.Parallel()
	alice := &idp.Principal{Sub: "alice", Iss: "https://issuer.example/", Provider: "auth0",
		Permissions: []string{"image_generation"}, Scopes: []string{}, Roles: []string{},
		Claims: map[string]any{"sub": "alice", "jti": "1"}}
	alice2 := &idp.Principal{Sub: "alice", Iss: "https://issuer.example/", Provider: "auth0",
		Permissions: []string{"image_generation"}, Scopes: []string{}, Roles: []string{},
		Claims: map[string]any{"sub": "alice", "jti": "3"}}
	bob := &idp.Principal{Sub: "bob", Iss: "https://issuer.example/", Provider: "auth0",
		Permissions: []string{"image_generation"}, Scopes: []string{}, Roles: []string{},
		Claims: map[string]any{"sub": "bob", "jti": "2"}}
	for _, c := range []struct {
		name, module           string
		wantVisible, wantCalls int // entries of each cache after the three tokens
	}{
		{"the default policy", "", 1, 2},
		{"a policy that reads sub", `package mcp.authz
visible_tools contains t.name if { some t in input.tools; input.principal.sub != "" }
allow if input.principal.sub != ""`, 2, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := engineOf(t, c.module)
			ctx := context.Background()
			for _, p := range []*idp.Principal{alice, alice2, bob} {
				if _, err := e.Visible(ctx, p); err != nil {
					t.Fatal(err)
				}
				if d := e.DecideRaw(ctx, p, "add", []byte(`{"a":1,"b":2}`)); d.Err != nil || !d.Allowed {
					t.Fatalf("%s calls add: %+v", p.Sub, d)
				}
			}
			cur := e.cur.Load()
			if got := cur.visible.Len(); got != c.wantVisible {
				t.Errorf("visible sets cached: %d, want %d", got, c.wantVisible)
			}
			if got := cur.calls.Len(); got != c.wantCalls {
				t.Errorf("decisions cached: %d, want %d", got, c.wantCalls)
			}
		})
	}
}

// engineOf compiles module, or the default policy when it is "", over the
// built-in tools, with the default caches.
func engineOf(t *testing.T, module string) *Engine {
	t.Helper()
	src := Source{Dir: "../rego"}
	if module != "" {
		src.Dir = t.TempDir()
		if err := os.WriteFile(filepath.Join(src.Dir, "policy.rego"), []byte(module), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(src, []Tool{{Name: "add"}, {Name: "whoami"}, {Name: "image_generation"}}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
