package policy_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/policy"
)

func TestRunTests(t *testing.T) {
	t.Parallel()
	const module = "package mcp.authz\n\nallow if input.user == \"alice\"\n"
	cases := []struct {
		name       string
		dir        func(t *testing.T) string
		verbose    bool
		wantErr    string   // substring of the error; "" for success
		wantOutput []string // substrings of the report
	}{
		{
			name:       "default policy passes",
			dir:        func(*testing.T) string { return defaultDir },
			wantOutput: []string{"PASS"},
		},
		{
			name: "passing tests pass",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{
					"p.rego": module,
					"p_test.rego": "package mcp.authz_test\n\nimport data.mcp.authz\n\n" +
						"test_alice_allowed if authz.allow with input as {\"user\": \"alice\"}\n",
				})
			},
			wantOutput: []string{"PASS: 1/1"},
		},
		{
			name: "verbose report names each test",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{
					"p.rego": module,
					"p_test.rego": "package mcp.authz_test\n\nimport data.mcp.authz\n\n" +
						"test_alice_allowed if authz.allow with input as {\"user\": \"alice\"}\n",
				})
			},
			verbose:    true,
			wantOutput: []string{"data.mcp.authz_test.test_alice_allowed: PASS", "PASS: 1/1"},
		},
		{
			name: "failing test fails",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{
					"p.rego": module,
					"p_test.rego": "package mcp.authz_test\n\nimport data.mcp.authz\n\n" +
						"test_alice_allowed if authz.allow with input as {\"user\": \"alice\"}\n\n" +
						"test_bob_allowed if authz.allow with input as {\"user\": \"bob\"}\n",
				})
			},
			wantErr:    "failed",
			wantOutput: []string{"FAIL", "test_bob_allowed", "PASS: 1/2", "FAIL: 1/2"},
		},
		{
			name: "test that errors fails",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{
					"p.rego":      module,
					"p_test.rego": "package mcp.authz_test\n\nf := 1 if true\n\nf := 2 if true\n\ntest_error if f == 1\n",
				})
			},
			wantErr:    "failed",
			wantOutput: []string{"ERROR", "test_error"},
		},
		{
			name: "tests read data files",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{
					"p.rego":      "package mcp.authz\n\nallow if input.user in data.users\n",
					"data.json":   `{"users": ["carol"]}`,
					"p_test.rego": "package mcp.authz_test\n\nimport data.mcp.authz\n\ntest_carol if authz.allow with input as {\"user\": \"carol\"}\n",
				})
			},
			wantOutput: []string{"PASS: 1/1"},
		},
		{
			name: "directory without tests is an error",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{"p.rego": module})
			},
			wantErr: "no test cases",
		},
		{
			name:    "empty directory is an error",
			dir:     func(t *testing.T) string { return t.TempDir() },
			wantErr: "no test cases",
		},
		{
			name: "syntax error is an error naming the file",
			dir: func(t *testing.T) string {
				return policyDir(t, map[string]string{
					"p.rego":      module,
					"p_test.rego": "package mcp.authz_test\n\ntest_x if {\n",
				})
			},
			wantErr: "p_test.rego",
		},
		{
			name:    "missing directory is an error",
			dir:     func(t *testing.T) string { return t.TempDir() + "/nope" },
			wantErr: "nope",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := policy.RunTests(context.Background(), tc.dir(t), &out, policy.TestOptions{Verbose: tc.verbose})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("RunTests: %v\n%s", err, out.String())
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("RunTests error = %v, want one containing %q\n%s", err, tc.wantErr, out.String())
			}
			for _, w := range tc.wantOutput {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report does not contain %q:\n%s", w, out.String())
				}
			}
		})
	}
}
