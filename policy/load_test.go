package policy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/policy"
	defaultpolicy "github.com/toolgate/toolgate/rego"
)

// New names the file and line of what does not compile.
func TestNewNamesFileAndLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"syntax error", map[string]string{
			"p.rego": "package mcp.authz\n\nallow if ) true\n\nx := 1\n",
		}, []string{"p.rego:3", "rego_parse_error"}},
		{"syntax error in a subfolder", map[string]string{
			"p.rego":      "package mcp.authz\n\nallow := true\n",
			"sub/q.rego":  "package mcp.authz.sub\n\n\nx := \n",
			"sub/ok.rego": "package mcp.authz.sub\n\ny := 1\n",
		}, []string{"q.rego:5", "rego_parse_error"}},
		{"unsafe variable", map[string]string{
			"p.rego": "package mcp.authz\n\nvisible_tools := {\"a\"}\n\nallow if x == 1\n",
		}, []string{"p.rego:5", "rego_unsafe_var_error"}},
		{"type error", map[string]string{
			"p.rego": "package mcp.authz\n\nallow if {\n\tn := 1 + \"a\"\n\tn > 0\n}\n",
		}, []string{"p.rego:4", "rego_type_error"}},
		{"unknown function", map[string]string{
			"p.rego": "package mcp.authz\n\nallow if no_such_builtin(1)\n",
		}, []string{"p.rego:3", "undefined function"}},
		{"invalid JSON data", map[string]string{
			"p.rego":    "package mcp.authz\n\nallow := true\n",
			"data.json": "{\"tool_rules\": {\n",
		}, []string{"data.json"}},
		{"invalid YAML data", map[string]string{
			"p.rego":    "package mcp.authz\n\nallow := true\n",
			"data.yaml": "a: [1, 2\n",
		}, []string{"data.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, tc.files)
			_, err := policy.New(policy.Source{Dir: dir}, catalogOf("a"), policy.Options{Logger: quietLogger()})
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Only policy files become policy: test modules, hidden files and folders and
// files of other kinds are ignored; data files are laid out by folder.
func TestNewLoadsOnlyPolicyFiles(t *testing.T) {
	t.Parallel()
	policyFiles := map[string]string{
		"p.rego": `package mcp.authz

visible_tools contains "root_json" if data.from_json == true
visible_tools contains "root_yaml" if data.from_yaml == true
visible_tools contains "x_json" if data.x.from_sub == true
visible_tools contains "x_y_yaml" if data.x.y.deep == true
visible_tools contains "hidden_data_file" if data.hidden == true
visible_tools contains "hidden_dir_data" if data[".cfg"].hidden == true
visible_tools contains "hidden_dir_data" if data.cfg.hidden == true
`,
		"data.json":     `{"from_json": true}`,
		"data.yaml":     "from_yaml: true\n",
		"x/data.json":   `{"from_sub": true}`,
		"x/y/data.yaml": "deep: true\n",
	}
	ignored := map[string]string{
		// A test module that would add to visible_tools, and one that does
		// not even parse.
		"p_test.rego":        "package mcp.authz\n\nvisible_tools contains \"from_test_file\"\n\ntest_x if true\n",
		"x/broken_test.rego": "this is not rego {{{",
		// Hidden files and folders.
		".hidden.rego":   "package mcp.authz\n\nvisible_tools contains \"hidden_file\"\n",
		".data.json":     `{"hidden": true}`,
		".cfg/data.json": `{"hidden": true}`,
		".cfg/q.rego":    "package mcp.authz\n\nvisible_tools contains \"hidden_dir_file\"\n",
		".git/HEAD":      "ref: refs/heads/main\n",
		".#p.rego":       "garbage {",
		// Files that are not policy.
		"README.md":  "# policy {\n",
		"main.go":    "package main\n\nfunc main() {}\n",
		"notes.txt":  "allow := true",
		"x/doc.md":   "{{{",
		"policy.bak": "package mcp.authz\n\nallow := true\n",
	}
	all := map[string]string{}
	for k, v := range policyFiles {
		all[k] = v
	}
	for k, v := range ignored {
		all[k] = v
	}
	e := mustNew(t, policy.Source{Dir: policyDir(t, all)}, catalogOf("a"), policy.Options{})
	got := visibleNames(t, e, user(nil, nil))
	if want := []string{"root_json", "root_yaml", "x_json", "x_y_yaml"}; !slices.Equal(got, want) {
		t.Errorf("visible_tools = %v, want %v", got, want)
	}

	t.Run("ignored files do not change the revision", func(t *testing.T) {
		clean := mustNew(t, policy.Source{Dir: policyDir(t, policyFiles)}, catalogOf("a"), policy.Options{})
		if e.Revision() != clean.Revision() {
			t.Errorf("revision with ignored files %s, without %s", e.Revision(), clean.Revision())
		}
	})
}

func TestIsPolicyFile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		want bool
	}{
		{"policy.rego", true},
		{"data.json", true},
		{"data.yaml", true},
		{"data.yml", true},
		{"policy_test.rego", false},
		{".hidden.rego", false},
		{".data.json", false},
		{"main.go", false},
		{"README.md", false},
		{"policy.rego.swp", false},
		{"policy.rego~", false},
		{"rego", false},
	}
	for _, tc := range cases {
		if got := policy.IsPolicyFile(tc.name); got != tc.want {
			t.Errorf("IsPolicyFile(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The embedded copy of the default policy is the policy on disk.
func TestEmbeddedDefaultPolicyMatchesDirectory(t *testing.T) {
	t.Parallel()
	dir := mustNew(t, policy.Source{Dir: defaultDir}, defaultCatalog, policy.Options{})
	emb := mustNew(t, policy.Source{FS: defaultpolicy.FS}, defaultCatalog, policy.Options{})
	if dir.Revision() != emb.Revision() {
		t.Errorf("revision of %s = %s, of the embedded policy = %s", defaultDir, dir.Revision(), emb.Revision())
	}
	if got := (policy.Source{FS: defaultpolicy.FS}).String(); got != "embedded default policy" {
		t.Errorf("Source.String() = %q", got)
	}
	if got := (policy.Source{Dir: "/etc/toolgate/policy"}).String(); got != "/etc/toolgate/policy" {
		t.Errorf("Source.String() = %q", got)
	}
}

// Revision is a hash of the content: the same files give the same revision
// wherever they are, and a change of content gives another.
func TestRevisionIsContentHash(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"p.rego":      simplePolicy,
		"data.json":   `{"visible": ["a", "b"], "reason": "no"}`,
		"x/data.yaml": "k: v\n",
		"x/q.rego":    "package mcp.authz.x\n\ny := 1\n",
	}
	revisionOf := func(t *testing.T, files map[string]string) string {
		t.Helper()
		return mustNew(t, policy.Source{Dir: policyDir(t, files)}, catalogOf("a"), policy.Options{}).Revision()
	}
	baseRev := revisionOf(t, base)
	if len(baseRev) < 12 || strings.Trim(baseRev, "0123456789abcdef") != "" {
		t.Errorf("revision %q is not a hex hash", baseRev)
	}
	with := func(name, content string) map[string]string {
		files := map[string]string{}
		for k, v := range base {
			files[k] = v
		}
		if content == "" {
			delete(files, name)
		} else {
			files[name] = content
		}
		return files
	}
	renamed := with("p.rego", "")
	renamed["policy.rego"] = base["p.rego"]

	cases := []struct {
		name  string
		files map[string]string
		same  bool
	}{
		{"same files in another directory", base, true},
		{"same files written in another order", with("x/q.rego", base["x/q.rego"]), true},
		{"one byte of a module", with("p.rego", strings.Replace(simplePolicy, "data.visible", "data.visiblf", 1)), false},
		{"a comment added to a module", with("p.rego", simplePolicy+"# a comment\n"), false},
		{"trailing space in a module", with("p.rego", simplePolicy+" "), false},
		{"a module in a subfolder", with("x/q.rego", "package mcp.authz.x\n\ny := 2\n"), false},
		{"a module renamed", renamed, false},
		{"a module added", with("z.rego", "package z\n"), false},
		{"a module removed", with("x/q.rego", ""), false},
		{"one byte of data.json", with("data.json", `{"visible": ["a", "c"], "reason": "no"}`), false},
		{"one byte of a data file in a subfolder", with("x/data.yaml", "k: w\n"), false},
		{"a data file removed", with("x/data.yaml", ""), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := revisionOf(t, tc.files)
			if tc.same && got != baseRev {
				t.Errorf("revision %s, want %s", got, baseRev)
			}
			if !tc.same && got == baseRev {
				t.Errorf("revision unchanged (%s)", got)
			}
		})
	}
}

// A directory that does not exist is an error, not an empty policy.
func TestNewMissingDirectory(t *testing.T) {
	t.Parallel()
	_, err := policy.New(policy.Source{Dir: filepath.Join(t.TempDir(), "nope")}, catalogOf("a"), policy.Options{Logger: quietLogger()})
	if err == nil {
		t.Fatal("New succeeded on a missing directory")
	}
	if _, statErr := os.Stat(defaultDir); statErr != nil {
		t.Fatalf("default policy missing: %v", statErr)
	}
}
