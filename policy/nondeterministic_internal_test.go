package policy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp"
)

// clockPolicy shows and allows tool "a" only before data.until_ns, by OPA's
// clock: the same question has another answer once the clock passes it.
const clockPolicy = `package mcp.authz

open if time.now_ns() < data.until_ns

visible_tools contains "a" if open

allow if open
`

// A policy that reads the clock is decided afresh on every call and every
// tools/list, whatever the cache setting: a cached answer would outlive the
// window it was true in.
func TestNondeterministicPolicyIsNotCached(t *testing.T) {
	t.Parallel()
	until := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	for name, text := range map[string]string{
		"policy.rego": clockPolicy,
		"data.json":   fmt.Sprintf(`{"until_ns": %d}`, until.UnixNano()),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(Source{Dir: dir}, []Tool{{Name: "a"}}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := until.Add(-time.Second)
	e.now = func() time.Time { return now }
	p := &idp.Principal{Sub: "u", Provider: "auth0"}
	ctx := context.Background()
	args := []byte(`{"x":1}`)

	if d := e.DecideRaw(ctx, p, "a", args); !d.Allowed || d.Err != nil {
		t.Fatalf("inside the window: %+v, want allowed", d)
	}
	if v, err := e.Visible(ctx, p); !v["a"] || err != nil {
		t.Fatalf("inside the window: visible %v %v, want a", v, err)
	}
	now = until.Add(time.Second)
	if d := e.DecideRaw(ctx, p, "a", args); d.Allowed || d.Visible {
		t.Errorf("the same call past the window: %+v, want denied and not visible (a cached decision was served)", d)
	}
	if v, err := e.Visible(ctx, p); v["a"] || err != nil {
		t.Errorf("past the window: visible %v %v, want nothing (a cached set was served)", v, err)
	}
}

// toolgate policy check names each call of a non-deterministic built-in,
// at its file and line, those inside functions too.
func TestCheckReportsNondeterministicBuiltins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	module := `package mcp.authz

visible_tools := {"a"}

allow if time.now_ns() > 0

pick(n) := rand.intn("k", n)

reason := sprintf("%d", [pick(3)])
`
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(module), 0o600); err != nil {
		t.Fatal(err)
	}
	findings, err := Check(Source{Dir: dir}, []Tool{{Name: "a"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if errs := findings.Errors(); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	file := filepath.Join(dir, "policy.rego")
	for _, want := range []struct {
		line    int
		builtin string
	}{{5, "time.now_ns"}, {7, "rand.intn"}} {
		found := false
		for _, f := range findings {
			if f.File == file && f.Line == want.line && f.Severity == "warning" &&
				strings.Contains(f.Message, want.builtin) && strings.Contains(f.Message, "not cached") {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning for %s at %s:%d that decisions are not cached; findings:\n%v", want.builtin, file, want.line, findings)
		}
	}
}
