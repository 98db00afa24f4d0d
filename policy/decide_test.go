package policy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

func TestDecideDefaultPolicy(t *testing.T) {
	t.Parallel()
	e := mustNew(t, policy.Source{Dir: defaultDir}, defaultCatalog, policy.Options{})
	imager := user([]string{"image_generation"}, []string{"images:write"})

	cases := []struct {
		name        string
		p           *idp.Principal
		tool        string
		args        map[string]any
		wantVisible bool
		wantAllowed bool
		wantScopes  []string // nil: none
		wantReason  string   // substring of Reason; "" for an allowed call
	}{
		{name: "allowed call", p: user(nil, nil), tool: "add", args: map[string]any{"a": 1, "b": 2},
			wantVisible: true, wantAllowed: true},
		{name: "allowed call with nil arguments", p: user(nil, nil), tool: "whoami",
			wantVisible: true, wantAllowed: true},
		{name: "allowed call with scope and argument within limits", p: imager, tool: "image_generation",
			args: map[string]any{"prompt": "a cat"}, wantVisible: true, wantAllowed: true},
		{name: "hidden tool is neither visible nor allowed", p: user(nil, nil), tool: "image_generation",
			args: map[string]any{"prompt": "a cat"}, wantReason: "not available"},
		{name: "anonymous call to a tool is hidden", p: idp.Anonymous(), tool: "add",
			wantReason: "not available"},
		{name: "tool missing from catalog is hidden", p: imager, tool: "no_such_tool",
			wantReason: "not available"},
		{name: "step-up: visible tool without call scope", p: user([]string{"image_generation"}, nil), tool: "image_generation",
			args: map[string]any{"prompt": "a cat"}, wantVisible: true, wantScopes: []string{"images:write"},
			wantReason: "images:write"},
		{name: "argument violation has a reason and no required scopes", p: imager, tool: "image_generation",
			args: map[string]any{"prompt": strings.Repeat("a", 1001)}, wantVisible: true,
			wantReason: `argument "prompt" is longer than 1000 characters`},
		{name: "argument of wrong type is a violation", p: imager, tool: "image_generation",
			args: map[string]any{"prompt": 5}, wantVisible: true, wantReason: `argument "prompt" must be a string`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := e.Decide(context.Background(), tc.p, tc.tool, tc.args)
			if d.Err != nil {
				t.Fatalf("Err = %v", d.Err)
			}
			if d.ID == "" {
				t.Error("ID is empty")
			}
			if d.Revision != e.Revision() {
				t.Errorf("Revision = %q, want %q", d.Revision, e.Revision())
			}
			if d.Visible != tc.wantVisible || d.Allowed != tc.wantAllowed {
				t.Errorf("Visible, Allowed = %v, %v; want %v, %v (reason %q)", d.Visible, d.Allowed, tc.wantVisible, tc.wantAllowed, d.Reason)
			}
			if len(d.RequiredScopes) != 0 || len(tc.wantScopes) != 0 {
				if !slices.Equal(d.RequiredScopes, tc.wantScopes) {
					t.Errorf("RequiredScopes = %q, want %q", d.RequiredScopes, tc.wantScopes)
				}
			}
			if tc.wantAllowed {
				if d.Reason != "" {
					t.Errorf("Reason of an allowed call = %q, want empty", d.Reason)
				}
			} else if !strings.Contains(d.Reason, tc.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.wantReason)
			}
		})
	}
}

func TestDecideIDUniquePerCall(t *testing.T) {
	t.Parallel()
	e := mustNew(t, policy.Source{Dir: defaultDir}, defaultCatalog, policy.Options{})
	seen := map[string]bool{}
	for i := range 200 {
		tool := []string{"add", "image_generation", "nope"}[i%3] // allowed, hidden and unknown calls alike
		d := e.Decide(context.Background(), user(nil, nil), tool, nil)
		if d.ID == "" || seen[d.ID] {
			t.Fatalf("call %d: ID %q is empty or repeated", i, d.ID)
		}
		seen[d.ID] = true
	}
}

// The gate requires both visible_tools and allow: allow alone never lets a
// call run.
func TestDecideRequiresVisibleAndAllow(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"p.rego": `package mcp.authz

visible_tools := {"shown", "shown_denied"}

allow if input.tool.name in {"shown", "hidden"}

reason := "policy says no" if input.tool.name == "shown_denied"

required_scopes := {"x:write"} if input.tool.name == "hidden"
`,
	})
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("shown", "shown_denied", "hidden"), policy.Options{})
	cases := []struct {
		name        string
		tool        string
		wantVisible bool
		wantAllowed bool
		wantReason  string
	}{
		{"visible tool with allow true is allowed", "shown", true, true, ""},
		{"allow true but tool not visible is not allowed", "hidden", false, false, "denied by policy"},
		{"visible tool with allow false keeps the policy's reason", "shown_denied", true, false, "policy says no"},
		{"unknown tool without reason gets the gate's reason", "unknown", false, false, "denied by policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := e.Decide(context.Background(), user(nil, nil), tc.tool, nil)
			if d.Err != nil {
				t.Fatalf("Err = %v", d.Err)
			}
			if d.Visible != tc.wantVisible || d.Allowed != tc.wantAllowed || d.Reason != tc.wantReason {
				t.Errorf("Decide(%s) = visible %v allowed %v reason %q; want %v %v %q",
					tc.tool, d.Visible, d.Allowed, d.Reason, tc.wantVisible, tc.wantAllowed, tc.wantReason)
			}
		})
	}
}

// The policy sees a call as the contract describes: action tools/call, the
// tool's name, catalog annotations, server, digest and pinned, the
// arguments, and the whole catalog.
func TestDecideCallInput(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"p.rego": `package mcp.authz

reason := json.marshal({
	"action": input.action,
	"tool": input.tool,
	"arguments": input.arguments,
	"tools": count(input.tools),
})
`,
	})
	catalog := catalogOf("a", "b")
	catalog[0].Annotations = map[string]any{"readOnlyHint": true}
	e := mustNew(t, policy.Source{Dir: dir}, catalog, policy.Options{})
	cases := []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"annotations come from the catalog", "a", map[string]any{"x": "y", "n": 2},
			`{"action":"tools/call","arguments":{"n":2,"x":"y"},"tool":{"annotations":{"readOnlyHint":true},"digest":"","name":"a","pinned":true,"server":"builtin"},"tools":2}`},
		{"nil annotations and arguments are empty objects", "b", nil,
			`{"action":"tools/call","arguments":{},"tool":{"annotations":{},"digest":"","name":"b","pinned":true,"server":"builtin"},"tools":2}`},
		{"tool outside the catalog has empty annotations, server and digest, and is not pinned", "zzz", map[string]any{},
			`{"action":"tools/call","arguments":{},"tool":{"annotations":{},"digest":"","name":"zzz","pinned":false,"server":""},"tools":2}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := e.Decide(context.Background(), user(nil, nil), tc.tool, tc.args)
			if d.Err != nil {
				t.Fatalf("Err = %v", d.Err)
			}
			if d.Reason != tc.want {
				t.Errorf("input = %s\nwant    %s", d.Reason, tc.want)
			}
		})
	}
}

// RequiredScopes is sorted, whatever order the set arrives in.
func TestDecideRequiredScopesSorted(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"p.rego": `package mcp.authz

visible_tools := {"t"}

required_scopes := {"z:write", "a:read", "m:admin"}

reason := "step up"
`,
	})
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("t"), policy.Options{})
	d := e.Decide(context.Background(), user(nil, nil), "t", nil)
	if d.Err != nil || d.Allowed || !d.Visible {
		t.Fatalf("Decide = %+v", d)
	}
	if want := []string{"a:read", "m:admin", "z:write"}; !slices.Equal(d.RequiredScopes, want) {
		t.Errorf("RequiredScopes = %q, want %q", d.RequiredScopes, want)
	}
}

// A decision id is a random UUID (RFC 9562 §5.4): version 4, variant 10.
func TestNewIDIsARandomUUID(t *testing.T) {
	t.Parallel()
	for range 100 {
		id := policy.NewID()
		u, err := uuid.Parse(id)
		if err != nil || u.String() != id || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("NewID() = %q: %v, version %d, variant %s; want a canonical version 4 UUID", id, err, u.Version(), u.Variant())
		}
	}
}
