package policy_test

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// ---- helpers shared by the package's tests ----

// defaultDir is the repository's default policy.
const defaultDir = "../rego"

// defaultCatalog is the catalog of the built-in tools the default policy
// names.
var defaultCatalog = []policy.Tool{
	{Name: "add", Description: "Add two numbers"},
	{Name: "whoami", Description: "Who am I"},
	{Name: "image_generation", Description: "Generate an image", Annotations: map[string]any{"openWorldHint": true}},
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// user is an authenticated principal with the given permissions and scopes.
func user(permissions, scopes []string) *idp.Principal {
	if permissions == nil {
		permissions = []string{}
	}
	if scopes == nil {
		scopes = []string{}
	}
	return &idp.Principal{
		Sub:         "user-1",
		Iss:         "https://issuer.example/",
		ClientID:    "client-1",
		Provider:    "auth0",
		OrgID:       "org-1",
		Scopes:      scopes,
		Permissions: permissions,
		Roles:       []string{},
		Claims:      map[string]any{"sub": "user-1"},
		Issuer:      "test",
	}
}

// writeFiles writes files (slash-separated paths relative to dir, contents)
// under dir, creating folders as needed. Each file is written to a temporary
// name and renamed into place, so a concurrent reader never sees half a file.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

// policyDir returns a fresh directory holding files.
func policyDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

// mustNew compiles src for catalog with a quiet logger unless opts has one.
func mustNew(t testing.TB, src policy.Source, catalog []policy.Tool, opts policy.Options) *policy.Engine {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e, err := policy.New(src, catalog, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", src, err)
	}
	return e
}

// catalogOf is a catalog of tools with the given names.
func catalogOf(names ...string) []policy.Tool {
	out := make([]policy.Tool, len(names))
	for i, n := range names {
		out[i] = policy.Tool{Name: n, Description: "tool " + n}
	}
	return out
}

// names returns the sorted keys of a Visible answer.
func names(set map[string]bool) []string {
	return slices.Sorted(maps.Keys(set))
}

// visibleNames calls Visible and fails the test on an error.
func visibleNames(t testing.TB, e *policy.Engine, p *idp.Principal) []string {
	t.Helper()
	set, err := e.Visible(context.Background(), p)
	if err != nil {
		t.Fatalf("Visible: %v", err)
	}
	for n, ok := range set {
		if !ok {
			t.Errorf("Visible returned %q mapped to false", n)
		}
	}
	return names(set)
}

// eventually polls cond every 20 ms until it holds or within has passed.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// simplePolicy is a module of package mcp.authz that shows the tools of
// visible and allows every call, with reason as the denial text.
const simplePolicy = `package mcp.authz

visible_tools := {t | some t in data.visible}

default allow := false

allow if input.action == "tools/call"

reason := data.reason
`
