package policy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/policy"
)

// Policies that make evaluation fail or return values of the wrong type must
// deny every call and report the error (Decide sets Err; Visible returns an
// error and an empty set).
func TestFailClosed(t *testing.T) {
	t.Parallel()
	// Wrongly typed values come from data.json so that the type checker cannot
	// see them at compile time (TestNewRefusesStaticallyWrongTypes covers
	// literals).
	cases := []struct {
		name string
		// rules are appended to "package mcp.authz"; every case also makes
		// the call of "a" otherwise allowed where it can.
		rules          string
		data           string // data.json; "" for none
		wantVisibleErr string // substring of Visible's error; "" for no error
		wantDecideErr  string // substring of Decide's Err
	}{
		{
			name:           "visible_tools as an array instead of a set",
			rules:          "visible_tools := data.v\n\nallow := true",
			data:           `{"v": ["a"]}`,
			wantVisibleErr: "visible_tools must be a set of strings",
			wantDecideErr:  "visible_tools must be a set of strings",
		},
		{
			name:           "visible_tools as a string",
			rules:          "visible_tools := data.v\n\nallow := true",
			data:           `{"v": "a"}`,
			wantVisibleErr: "visible_tools must be a set of strings",
			wantDecideErr:  "visible_tools must be a set of strings",
		},
		{
			name:           "visible_tools set with a non-string element",
			rules:          "visible_tools := {x | some x in data.v}\n\nallow := true",
			data:           `{"v": ["a", 1]}`,
			wantVisibleErr: "visible_tools must be a set of strings",
			wantDecideErr:  "visible_tools must be a set of strings",
		},
		{
			name:          "reason as a number",
			rules:         "visible_tools := {\"a\"}\n\nallow := true\n\nreason := data.v",
			data:          `{"v": 42}`,
			wantDecideErr: "reason must be a string",
		},
		{
			name:          "required_scopes as a string",
			rules:         "visible_tools := {\"a\"}\n\nallow := true\n\nrequired_scopes := data.v",
			data:          `{"v": "images:write"}`,
			wantDecideErr: "required_scopes must be a set of strings",
		},
		{
			name:          "required_scopes as an array",
			rules:         "visible_tools := {\"a\"}\n\nallow := true\n\nrequired_scopes := data.v",
			data:          `{"v": ["images:write"]}`,
			wantDecideErr: "required_scopes must be a set of strings",
		},
		{
			name:          "required_scopes set with a non-string element",
			rules:         "visible_tools := {\"a\"}\n\nallow := true\n\nrequired_scopes := {\"images:write\", 7}",
			wantDecideErr: "required_scopes must be a set of strings",
		},
		{
			name: "conflicting values for allow",
			rules: "visible_tools := {\"a\"}\n\nallow := true if input.action == \"tools/call\"\n\n" +
				"allow := false if input.tool.name == \"a\"",
			wantDecideErr: "eval_conflict_error",
		},
		{
			name: "conflicting values for reason",
			rules: "visible_tools := {\"a\"}\n\nallow := true\n\nreason := \"one\" if input.tool.name == \"a\"\n\n" +
				"reason := \"two\" if input.action == \"tools/call\"",
			wantDecideErr: "eval_conflict_error",
		},
		{
			name: "conflicting values for visible_tools",
			rules: "visible_tools := {\"a\"} if input.principal.provider != \"\"\n\n" +
				"visible_tools := {\"b\"} if input.principal.sub != \"\"\n\nallow := true",
			wantVisibleErr: "eval_conflict_error",
			wantDecideErr:  "eval_conflict_error",
		},
		{
			name:          "builtin error in allow under strict builtin errors",
			rules:         "visible_tools := {\"a\"}\n\nallow if to_number(\"x\") > 0",
			wantDecideErr: "to_number",
		},
		{
			name:           "builtin error in visible_tools under strict builtin errors",
			rules:          "visible_tools := {\"a\"} if to_number(\"x\") > 0\n\nallow := true",
			wantVisibleErr: "to_number",
			wantDecideErr:  "to_number",
		},
		{
			name:          "allow as a non-boolean string is not true",
			rules:         "visible_tools := {\"a\"}\n\nallow := data.v",
			data:          `{"v": "yes"}`,
			wantDecideErr: "allow",
		},
		{
			name:          "allow as a non-boolean number is not true",
			rules:         "visible_tools := {\"a\"}\n\nallow := data.v",
			data:          `{"v": 1}`,
			wantDecideErr: "allow",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"p.rego": "package mcp.authz\n\n" + tc.rules + "\n"}
			if tc.data != "" {
				files["data.json"] = tc.data
			}
			e := mustNew(t, policy.Source{Dir: policyDir(t, files)}, catalogOf("a", "b"), policy.Options{})
			p := user(nil, nil)

			set, err := e.Visible(context.Background(), p)
			switch {
			case tc.wantVisibleErr == "" && err != nil:
				t.Errorf("Visible: unexpected error %v", err)
			case tc.wantVisibleErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantVisibleErr)):
				t.Errorf("Visible error = %v, want one containing %q", err, tc.wantVisibleErr)
			}
			if tc.wantVisibleErr != "" && (set == nil || len(set) != 0) {
				t.Errorf("Visible on error = %v, want an empty non-nil set", set)
			}

			d := e.Decide(context.Background(), p, "a", map[string]any{})
			if d.Allowed {
				t.Errorf("Decide allowed the call: %+v", d)
			}
			if d.ID == "" || d.Revision != e.Revision() {
				t.Errorf("Decide ID %q, Revision %q (want non-empty, %q)", d.ID, d.Revision, e.Revision())
			}
			if d.Err == nil || !strings.Contains(d.Err.Error(), tc.wantDecideErr) {
				t.Fatalf("Decide Err = %v, want one containing %q (decision %+v)", d.Err, tc.wantDecideErr, d)
			}
			if d.Visible || len(d.RequiredScopes) != 0 || d.Reason == "" {
				t.Errorf("Decide on error = visible %v, scopes %q, reason %q; want false, none, a reason",
					d.Visible, d.RequiredScopes, d.Reason)
			}
		})
	}
}

// Rules whose wrong type the type checker sees are refused by New: the
// policy never serves.
func TestNewRefusesStaticallyWrongTypes(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, rules string }{
		{"allow as a string literal", "visible_tools := {\"a\"}\n\nallow := \"yes\""},
		{"allow as a number literal", "visible_tools := {\"a\"}\n\nallow := 1"},
		{"visible_tools as a string literal", "visible_tools := \"a\""},
		{"required_scopes as a string literal", "visible_tools := {\"a\"}\n\nrequired_scopes := \"images:write\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, map[string]string{"p.rego": "package mcp.authz\n\n" + tc.rules + "\n"})
			_, err := policy.New(policy.Source{Dir: dir}, catalogOf("a"), policy.Options{Logger: quietLogger()})
			if err == nil {
				t.Fatal("New succeeded, want a type error")
			}
			if !strings.Contains(err.Error(), "p.rego") {
				t.Errorf("the type error does not name the operator's file: %v", err)
			}
		})
	}
}

// New refuses a policy without a module in package mcp.authz, with an error
// that says so.
func TestNewRequiresPackageMcpAuthz(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
	}{
		{"empty directory", map[string]string{}},
		{"only another package", map[string]string{"p.rego": "package other\n\nallow := true\n"}},
		{"only a sub-package", map[string]string{"p.rego": "package mcp.authz.extra\n\nallow := true\n"}},
		{"only data", map[string]string{"data.json": `{"mcp": {"authz": {"allow": true}}}`}},
		{"package mcp.authz only in a test file", map[string]string{
			"p_test.rego": "package mcp.authz\n\ntest_x if true\n",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, tc.files)
			e, err := policy.New(policy.Source{Dir: dir}, catalogOf("a"), policy.Options{Logger: quietLogger()})
			if err == nil {
				t.Fatalf("New succeeded (revision %s), want an error", e.Revision())
			}
			if !strings.Contains(err.Error(), "package mcp.authz") {
				t.Errorf("error = %q, want it to mention package mcp.authz", err)
			}
			if e != nil {
				t.Errorf("New returned an engine with its error")
			}
		})
	}
}
