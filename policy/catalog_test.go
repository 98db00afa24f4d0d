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

// pinPolicy shows unpinned tools to reviewers only, and lets a call through
// only for the digest the reviewer was shown.
const pinPolicy = `package mcp.authz

visible_tools contains t.name if {
	some t in input.tools
	t.pinned
}

visible_tools contains t.name if {
	some t in input.tools
	not t.pinned
	"reviewer" in input.principal.roles
}

default allow := false

allow if input.tool.pinned
allow if input.tool.digest == "sha256:reviewed"

reason := "unpinned"
`

// An upstream tool's digest and pinned reach the policy, in input.tools
// (visible_tools) and input.tool (allow); a built-in tool is pinned, and a
// new catalog's pinned is in force at once.
func TestCatalogDigestAndPinned(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{"p.rego": pinPolicy})
	e := mustNew(t, policy.Source{Dir: dir}, []policy.Tool{{Name: "add"},
		{Name: "fs_read", Server: "fs", Digest: "sha256:a", Pinned: true},
		{Name: "fs_write", Server: "fs", Digest: "sha256:reviewed"},
		{Name: "fs_move", Server: "fs", Digest: "sha256:b"}},
		policy.Options{Logger: quietLogger()})
	p, reviewer := user(nil, nil), user(nil, nil)
	reviewer.Roles = []string{"reviewer"}
	if got, want := visibleNames(t, e, p), []string{"add", "fs_read"}; !slices.Equal(got, want) {
		t.Errorf("visible = %v, want %v", got, want)
	}
	if got, want := visibleNames(t, e, reviewer), []string{"add", "fs_move", "fs_read", "fs_write"}; !slices.Equal(got, want) {
		t.Errorf("visible to a reviewer = %v, want %v", got, want)
	}
	for tool, want := range map[string]bool{"add": true, "fs_read": true, "fs_write": true, "fs_move": false} {
		if d := e.Decide(context.Background(), reviewer, tool, nil); d.Allowed != want {
			t.Errorf("%s: %+v, want allowed %v", tool, d, want)
		}
	}
	if err := e.SetCatalog([]policy.Tool{{Name: "add"}, {Name: "fs_move", Server: "fs", Digest: "sha256:b", Pinned: true}}); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), reviewer, "fs_move", nil); !d.Allowed {
		t.Errorf("fs_move once pinned: %+v, want allowed", d)
	}
}
