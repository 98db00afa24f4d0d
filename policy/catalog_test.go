package policy_test

import (
	"context"
	"slices"
	"testing"

	"github.com/toolgate/toolgate/policy"
)

// serverPolicy reads the server of the catalog's tools and of the call's
// tool: what the gateway adds to the input (issue 15).
const serverPolicy = `package mcp.authz

visible_tools := {t.name | some t in input.tools; t.server in {"builtin", "fs"}}

default allow := false

allow if input.tool.server == "fs"

reason := "not fs"
`

// The catalog's server reaches the policy, in input.tools and input.tool,
// and a new catalog (upstream tools changed) is in force at once, the
// cached answers of the old one dropped.
func TestCatalogServerAndSetCatalog(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{"p.rego": serverPolicy})
	e := mustNew(t, policy.Source{Dir: dir}, []policy.Tool{{Name: "add"}, {Name: "fs_read", Server: "fs"}, {Name: "gh_issue", Server: "gh"}},
		policy.Options{Logger: quietLogger()})
	p := user(nil, nil)
	if got, want := visibleNames(t, e, p), []string{"add", "fs_read"}; !slices.Equal(got, want) {
		t.Errorf("visible = %v, want %v (the server of a tool without one is builtin)", got, want)
	}
	if d := e.Decide(context.Background(), p, "fs_read", nil); !d.Allowed {
		t.Errorf("fs_read: %+v, want allowed by input.tool.server", d)
	}
	if d := e.Decide(context.Background(), p, "add", nil); d.Allowed {
		t.Errorf("add: %+v, want denied (server builtin)", d)
	}
	if err := e.SetCatalog([]policy.Tool{{Name: "add"}, {Name: "fs_write", Server: "fs"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := visibleNames(t, e, p), []string{"add", "fs_write"}; !slices.Equal(got, want) {
		t.Errorf("visible after SetCatalog = %v, want %v", got, want)
	}
	if d := e.Decide(context.Background(), p, "fs_read", nil); d.Visible || d.Allowed {
		t.Errorf("fs_read after it left the catalog: %+v, want hidden", d)
	}
}

// tool_rules naming a tool the catalog lacks refuses the policy, unless the
// catalog is the gateway's, where the tool's upstream may be down.
func TestUnknownToolRulesWithADynamicCatalog(t *testing.T) {
	t.Parallel()
	if _, err := policy.New(policy.Source{Dir: defaultDir}, catalogOf("add", "whoami"), policy.Options{Logger: quietLogger()}); err == nil {
		t.Error("a static catalog without image_generation: want an error")
	}
	if _, err := policy.New(policy.Source{Dir: defaultDir}, catalogOf("add", "whoami"), policy.Options{Logger: quietLogger(), DynamicCatalog: true}); err != nil {
		t.Errorf("a dynamic catalog: %v", err)
	}
}

// Under the default policy, whose decisions are cached without their
// arguments, a new catalog drops those too: a tool that left it is hidden
// at once, whatever arguments the next call brings.
func TestSetCatalogDropsArgumentFreeDecisions(t *testing.T) {
	t.Parallel()
	e := mustNew(t, policy.Source{Dir: defaultDir}, catalogOf("add", "whoami", "image_generation"), policy.Options{Logger: quietLogger()})
	p := user(nil, nil)
	for _, args := range []string{`{"a":1,"b":2}`, `{"a":3,"b":4}`} {
		if d := e.DecideRaw(context.Background(), p, "add", []byte(args)); !d.Allowed {
			t.Fatalf("add %s: %+v, want allowed", args, d)
		}
	}
	if err := e.SetCatalog(catalogOf("whoami", "image_generation")); err != nil {
		t.Fatal(err)
	}
	if d := e.DecideRaw(context.Background(), p, "add", []byte(`{"a":5,"b":6}`)); d.Visible || d.Allowed {
		t.Errorf("add after it left the catalog: %+v, want hidden", d)
	}
}
