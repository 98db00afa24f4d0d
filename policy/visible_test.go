package policy_test

import (
	"slices"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
	defaultpolicy "github.com/toolgate/toolgate/rego"
)

func TestVisible(t *testing.T) {
	t.Parallel()
	dirEngine := mustNew(t, policy.Source{Dir: defaultDir}, defaultCatalog, policy.Options{})
	fsEngine := mustNew(t, policy.Source{FS: defaultpolicy.FS}, defaultCatalog, policy.Options{})
	// A catalog tool that the policy gives no rule is never visible.
	bigEngine := mustNew(t, policy.Source{Dir: defaultDir}, catalogOf("add", "image_generation", "whoami", "not_in_policy"), policy.Options{})

	cases := []struct {
		name   string
		engine *policy.Engine
		p      *idp.Principal
		want   []string
	}{
		{"user without permissions sees add and whoami", dirEngine, user(nil, nil), []string{"add", "whoami"}},
		{"permission image_generation shows every tool", dirEngine, user([]string{"image_generation"}, nil), []string{"add", "image_generation", "whoami"}},
		{"role granting image_generation shows every tool", dirEngine, func() *idp.Principal {
			p := user(nil, nil)
			p.Roles = []string{"image-creator"}
			return p
		}(), []string{"add", "image_generation", "whoami"}},
		{"scope alone does not show image_generation", dirEngine, user(nil, []string{"images:write"}), []string{"add", "whoami"}},
		{"anonymous sees nothing", dirEngine, idp.Anonymous(), []string{}},
		{"principal with nil slices is treated like empty ones", dirEngine, &idp.Principal{Sub: "s", Provider: "auth0"}, []string{"add", "whoami"}},
		{"embedded default policy agrees for a user", fsEngine, user(nil, nil), []string{"add", "whoami"}},
		{"embedded default policy agrees for anonymous", fsEngine, idp.Anonymous(), []string{}},
		{"catalog tool without a rule never appears", bigEngine, user([]string{"image_generation"}, nil), []string{"add", "image_generation", "whoami"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := visibleNames(t, tc.engine, tc.p)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Visible = %v, want %v", got, tc.want)
			}
		})
	}
}

// A policy whose visible_tools names a tool outside the catalog (and does
// not intersect with input.tools itself) still only sees what it names; the
// engine does not add catalog tools.
func TestVisibleReturnsExactlyVisibleTools(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"p.rego":    simplePolicy,
		"data.json": `{"visible": ["a", "c"], "reason": "no"}`,
	})
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a", "b"), policy.Options{})
	got := visibleNames(t, e, user(nil, nil))
	// "c" is not in the catalog, but the gate answers with the policy's set;
	// the default policy is what intersects with the catalog.
	if want := []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("Visible = %v, want %v", got, want)
	}
}

// Visible must evaluate visible_tools once with the whole catalog as input
// (input.tools), not once per tool: a policy that counts input.tools sees
// all of them.
func TestVisibleSeesWholeCatalogInOneEvaluation(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"p.rego": `package mcp.authz

visible_tools := {sprintf("%d tools, action %s", [count(input.tools), input.action])} | {t.name | some t in input.tools; t.annotations.pick == true}
`,
	})
	catalog := catalogOf("a", "b", "c")
	catalog[1].Annotations = map[string]any{"pick": true}
	e := mustNew(t, policy.Source{Dir: dir}, catalog, policy.Options{})
	got := visibleNames(t, e, user(nil, nil))
	if want := []string{"3 tools, action tools/list", "b"}; !slices.Equal(got, want) {
		t.Errorf("Visible = %v, want %v", got, want)
	}
}

// The policy sees the principal in the contract's shape: every field present,
// nil slices and maps as empty ones.
func TestVisiblePrincipalInputShape(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"p.rego": `package mcp.authz

visible_tools := {json.marshal(input.principal)}
`,
	})
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{})
	cases := []struct {
		name string
		p    *idp.Principal
		want string
	}{
		{"zero principal has empty fields", &idp.Principal{},
			`{"claims":{},"client_id":"","iss":"","org_id":"","permissions":[],"provider":"","roles":[],"scopes":[],"sub":""}`},
		{"anonymous principal", idp.Anonymous(),
			`{"claims":{},"client_id":"","iss":"","org_id":"","permissions":[],"provider":"anonymous","roles":[],"scopes":[],"sub":""}`},
		{"full principal", &idp.Principal{Sub: "s", Iss: "i", ClientID: "c", Provider: "auth0", OrgID: "o",
			Scopes: []string{"x"}, Permissions: []string{"p"}, Roles: []string{"r"}, Claims: map[string]any{"k": "v"}, Issuer: "label"},
			`{"claims":{"k":"v"},"client_id":"c","iss":"i","org_id":"o","permissions":["p"],"provider":"auth0","roles":["r"],"scopes":["x"],"sub":"s"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := visibleNames(t, e, tc.p)
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("input.principal = %v\nwant             %s", got, tc.want)
			}
		})
	}
}
