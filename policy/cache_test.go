package policy_test

import (
	"context"
	"slices"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// echoPolicy shows the tools named in the principal's claim "show" and
// answers every call with a reason made of the claim "tag" and the argument
// "x", so that any part of the cache key left out shows as a wrong answer.
const echoPolicy = `package mcp.authz

visible_tools := {t | some t in input.principal.claims.show}

allow if input.arguments.x == "ok"

reason := sprintf("%v/%v/%v/%v", [input.tool.name, input.principal.claims.tag, input.arguments.x, data.tag])

required_scopes := {"need:ok"} if input.arguments.x != "ok"
`

func taggedUser(tag string, show ...string) *idp.Principal {
	p := user(nil, nil)
	p.Claims = map[string]any{"tag": tag, "show": show}
	return p
}

// The decision caches (on by default) must never change an answer: every
// part of the question is part of the key.
func TestDecisionCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		size int
	}{{"cache on", 0}, {"tiny cache", 1}, {"cache off", -1}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, map[string]string{"p.rego": echoPolicy, "data.json": `{"tag": "d1"}`})
			e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a", "b"), policy.Options{CacheSize: c.size})
			cases := []struct {
				name       string
				p          *idp.Principal
				tool       string
				args       map[string]any
				wantReason string
				wantAllow  bool
			}{
				{"first question", taggedUser("t1", "a", "b"), "a", map[string]any{"x": "ok"}, "a/t1/ok/d1", true},
				{"same question asked again", taggedUser("t1", "a", "b"), "a", map[string]any{"x": "ok"}, "a/t1/ok/d1", true},
				{"another tool", taggedUser("t1", "a", "b"), "b", map[string]any{"x": "ok"}, "b/t1/ok/d1", true},
				{"another argument", taggedUser("t1", "a", "b"), "a", map[string]any{"x": "no"}, "a/t1/no/d1", false},
				{"another claim", taggedUser("t2", "a", "b"), "a", map[string]any{"x": "ok"}, "a/t2/ok/d1", true},
				{"fewer visible tools", taggedUser("t1", "b"), "a", map[string]any{"x": "ok"}, "a/t1/ok/d1", false},
				{"nil arguments leave the reason undefined", taggedUser("t1", "a"), "a", nil, "denied by policy", false},
			}
			for _, tc := range cases {
				d := e.Decide(ctx, tc.p, tc.tool, tc.args)
				if d.Err != nil {
					t.Fatalf("%s: Err = %v", tc.name, d.Err)
				}
				if d.Reason != tc.wantReason || d.Allowed != tc.wantAllow {
					t.Errorf("%s: reason %q allowed %v, want %q %v", tc.name, d.Reason, d.Allowed, tc.wantReason, tc.wantAllow)
				}
			}

			// Visible is keyed by everything the policy sees of the principal.
			if got := visibleNames(t, e, taggedUser("t1", "a", "b")); !slices.Equal(got, []string{"a", "b"}) {
				t.Errorf("Visible = %v, want [a b]", got)
			}
			if got := visibleNames(t, e, taggedUser("t1", "b")); !slices.Equal(got, []string{"b"}) {
				t.Errorf("Visible after another principal's = %v, want [b]", got)
			}

			// A reload drops the answers of the old revision.
			p := taggedUser("t1", "a")
			before := e.Decide(ctx, p, "a", map[string]any{"x": "ok"})
			writeFiles(t, dir, map[string]string{"data.json": `{"tag": "d2"}`})
			if err := e.Reload(); err != nil {
				t.Fatal(err)
			}
			after := e.Decide(ctx, p, "a", map[string]any{"x": "ok"})
			if before.Reason != "a/t1/ok/d1" || after.Reason != "a/t1/ok/d2" || after.Revision == before.Revision {
				t.Errorf("before reload %q at %s, after %q at %s; want a/t1/ok/d1 then a/t1/ok/d2 at a new revision",
					before.Reason, before.Revision, after.Reason, after.Revision)
			}
		})
	}
}

// A decision is a value: what one caller does with it does not change the
// answer another caller gets.
func TestDecisionIsAValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := policyDir(t, map[string]string{"p.rego": echoPolicy, "data.json": `{"tag": "d1"}`})
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{})
	p := taggedUser("t1", "a")
	args := map[string]any{"x": "no"}

	first := e.Decide(ctx, p, "a", args)
	if !slices.Equal(first.RequiredScopes, []string{"need:ok"}) {
		t.Fatalf("RequiredScopes = %q", first.RequiredScopes)
	}
	first.RequiredScopes[0] = "changed:by-caller"
	first.Reason = "changed"

	second := e.Decide(ctx, p, "a", args)
	if second.ID == first.ID {
		t.Errorf("the cached decision kept its ID %s", first.ID)
	}
	if second.Reason != "a/t1/no/d1" {
		t.Errorf("Reason = %q", second.Reason)
	}
	if !slices.Equal(second.RequiredScopes, []string{"need:ok"}) {
		t.Errorf("a cached Decision shares its RequiredScopes with its callers: after one caller changed it, "+
			"the next got %q", second.RequiredScopes)
	}
}
