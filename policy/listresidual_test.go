package policy_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// listCatalog has tools of toolgate and of two upstreams, with and without
// the annotations the rules below select on.
var listCatalog = []policy.Tool{
	{Name: "add"}, {Name: "whoami"},
	{Name: "image_generation", Annotations: map[string]any{"openWorldHint": true}},
	{Name: "fs_read_text_file", Server: "fs", Annotations: map[string]any{"readOnlyHint": true}},
	{Name: "fs_list_directory", Server: "fs", Annotations: map[string]any{"readOnlyHint": true}},
	{Name: "fs_write_file", Server: "fs", Annotations: map[string]any{"readOnlyHint": false}},
	{Name: "fs_move_file", Server: "fs"},
	{Name: "gh_search", Server: "gh", Annotations: map[string]any{"readOnlyHint": true}},
	{Name: "gh_merge", Server: "gh", Annotations: map[string]any{"destructiveHint": true}},
}

// A new principal's tools/list decided from the list residual (the
// conditions of partial evaluation, grouped) is the list a full
// evaluation gives: the default policy over data that grants by
// permission, scope, role (through role_permissions), annotations, server
// rules, lists of rules and anonymous rules, for generated principals.
func TestListResidualAgreesWithFullEvaluation(t *testing.T) {
	t.Parallel()
	module, err := os.ReadFile(filepath.Join(defaultDir, "policy.rego"))
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{
		"the default data": mustRead(t, filepath.Join(defaultDir, "data.json")),
		"every kind of rule": `{
		  "tool_rules": {
		    "add": {"anonymous": true},
		    "whoami": {},
		    "image_generation": {"any_of": {"permissions": ["image_generation"], "roles": ["admin"]}, "call_scopes": ["images:write"]},
		    "gh_merge": [{"any_of": {"scopes": ["mcp:admin"]}}, {"any_of": {"roles": ["member"]}, "annotations": {"destructiveHint": false}}]
		  },
		  "server_rules": {
		    "fs": [{"annotations": {"readOnlyHint": true}, "any_of": {"permissions": ["fs:read"]}},
		           {"any_of": {"permissions": ["fs:write"], "scopes": ["images:admin"]}}],
		    "gh": {"any_of": {"scopes": ["read:okrs"], "permissions": []}}
		  },
		  "role_permissions": {"admin": ["image_generation", "fs:write"], "member": ["fs:read"], "image-creator": ["image_generation"]}
		}`,
		"a mistaken rule withholds": `{"tool_rules": {"add": {"any_of": "everyone"}, "whoami": {"annotations": 3}, "image_generation": {"any_of": {"permissions": "image_generation"}}}}`,
		"no data":                   `{}`,
	}
	for name, d := range data {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, map[string]string{"policy.rego": string(module), "data.json": d})
			fast := mustNew(t, policy.Source{Dir: dir}, listCatalog, policy.Options{})
			full := mustNew(t, policy.Source{Dir: dir}, listCatalog, policy.Options{CacheSize: -1})
			if !fast.WaitListResidual(context.Background()) {
				t.Fatal("no list residual for the default policy")
			}
			r := rand.New(rand.NewPCG(3, 5))
			ps := []*idp.Principal{idp.Anonymous(), everyGrant("auth0"), everyGrant("stytch")}
			for range 60 {
				ps = append(ps, fastPathPrincipal(r.Uint64()))
			}
			for _, p := range ps {
				got, want := visibleNames(t, fast, p), visibleNames(t, full, p)
				if !slices.Equal(got, want) {
					t.Errorf("%s: the list residual shows %v, a full evaluation %v", p.Input(), got, want)
				}
			}
		})
	}
}

// Where partial evaluation leaves anything but conditions on the principal
// that bind the name to a constant, there is no list residual, and lists
// are evaluated in full.
func TestListResidualRefused(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"names from the principal":            "package mcp.authz\nvisible_tools contains n if some n in input.principal.permissions",
		"the whole input given to a built-in": "package mcp.authz\nvisible_tools contains t.name if { some t in input.tools; object.get(input, [\"principal\", \"sub\"], \"\") != \"\" }",
		"with":                                "package mcp.authz\nvisible_tools contains t.name if { some t in input.tools; f with input.principal.sub as \"x\" }\nf if input.principal.sub == \"x\"",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, map[string]string{"policy.rego": text})
			fast := mustNew(t, policy.Source{Dir: dir}, listCatalog, policy.Options{})
			full := mustNew(t, policy.Source{Dir: dir}, listCatalog, policy.Options{CacheSize: -1})
			if fast.WaitListResidual(context.Background()) {
				t.Fatal("a list residual")
			}
			p := user([]string{"add", "fs_move_file"}, nil)
			if got, want := visibleNames(t, fast, p), visibleNames(t, full, p); !slices.Equal(got, want) {
				t.Errorf("fast %v, full %v", got, want)
			}
		})
	}
}

// A policy under which no principal sees a tool has a list residual of no
// groups, and lists nothing without evaluating; one under which every
// principal sees every tool, one group without a condition.
func TestListResidualNoneAndAll(t *testing.T) {
	t.Parallel()
	for text, want := range map[string][]string{
		"package mcp.authz\nvisible_tools contains t.name if { some t in input.tools; t.server == \"nowhere\" }": nil,
		"package mcp.authz\nvisible_tools contains t.name if some t in input.tools":                              catalogNamesOf(listCatalog),
	} {
		e := mustNew(t, policy.Source{Dir: policyDir(t, map[string]string{"policy.rego": text})}, listCatalog, policy.Options{})
		if !e.WaitListResidual(context.Background()) {
			t.Fatalf("%s: no list residual", text)
		}
		for _, p := range []*idp.Principal{idp.Anonymous(), user(nil, nil), everyGrant("auth0")} {
			if got := visibleNames(t, e, p); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Errorf("%s: %s sees %v, want %v", text, p.Input(), got, want)
			}
		}
	}
}

// A new catalog gets a list residual of its own: a new principal never
// sees the tools of the old catalog, nor misses the new catalog's.
func TestListResidualFollowsCatalog(t *testing.T) {
	t.Parallel()
	e := mustNew(t, policy.Source{Dir: defaultDir}, catalogOf("add", "whoami"), policy.Options{DynamicCatalog: true})
	if !e.WaitListResidual(context.Background()) {
		t.Fatal("no list residual")
	}
	if err := e.SetCatalog(catalogOf("add", "image_generation")); err != nil {
		t.Fatal(err)
	}
	p := user([]string{"image_generation"}, nil)
	if got := visibleNames(t, e, p); !slices.Equal(got, []string{"add", "image_generation"}) {
		t.Errorf("right after the change: %v", got)
	}
	if !e.WaitListResidual(context.Background()) {
		t.Fatal("no list residual for the new catalog")
	}
	p.Sub, p.Permissions = "user-2", []string{"image_generation", "other"}
	if got := visibleNames(t, e, p); !slices.Equal(got, []string{"add", "image_generation"}) {
		t.Errorf("from the new residual: %v", got)
	}
	q := user([]string{"another"}, nil)
	q.Sub = "user-3"
	if got := visibleNames(t, e, q); !slices.Equal(got, []string{"add"}) {
		t.Errorf("without the permission, from the new residual: %v", got)
	}
}

func mustRead(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
