package policy_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/policy"
	defaultpolicy "github.com/toolgate/toolgate/rego"
)

// recorder records the calls of Options.OnSwap and Options.OnReload.
type recorder struct {
	mu      sync.Mutex
	swaps   []string
	reloads []error
}

func (r *recorder) options() policy.Options {
	return policy.Options{
		Logger: quietLogger(),
		OnSwap: func(rev string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.swaps = append(r.swaps, rev)
		},
		OnReload: func(err error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.reloads = append(r.reloads, err)
		},
	}
}

func (r *recorder) get() (swaps []string, reloads []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.swaps), slices.Clone(r.reloads)
}

// reasonOf is the reason the policy gives for a call of "a".
func reasonOf(t testing.TB, e *policy.Engine) string {
	t.Helper()
	d := e.Decide(context.Background(), user(nil, nil), "a", nil)
	if d.Err != nil {
		t.Fatalf("Decide: %v", d.Err)
	}
	return d.Reason
}

// simpleFiles is a directory of simplePolicy that shows "a" and gives reason
// for every call.
func simpleFiles(reason string) map[string]string {
	return map[string]string{
		"p.rego":    simplePolicy,
		"data.json": `{"visible": ["a"], "reason": "` + reason + `"}`,
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	const broken = "package mcp.authz\n\nallow if {\n\tx == \n}\n"

	t.Run("new engine calls no hook", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		mustNew(t, policy.Source{Dir: policyDir(t, simpleFiles("v1"))}, catalogOf("a"), rec.options())
		if swaps, reloads := rec.get(); len(swaps) != 0 || len(reloads) != 0 {
			t.Errorf("OnSwap %v, OnReload %v after New; want no calls", swaps, reloads)
		}
	})

	t.Run("good change swaps in a new revision and calls OnSwap with it", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, simpleFiles("v1"))
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), rec.options())
		oldRev, oldLoaded := e.Revision(), e.LoadedAt()
		if got := reasonOf(t, e); got != "v1" {
			t.Fatalf("reason = %q, want v1", got)
		}
		time.Sleep(time.Millisecond) // LoadedAt must move on
		writeFiles(t, dir, map[string]string{"data.json": `{"visible": ["a"], "reason": "v2"}`})
		if err := e.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if e.Revision() == oldRev {
			t.Errorf("revision unchanged (%s)", oldRev)
		}
		if !e.LoadedAt().After(oldLoaded) {
			t.Errorf("LoadedAt %v not after %v", e.LoadedAt(), oldLoaded)
		}
		if got := reasonOf(t, e); got != "v2" {
			t.Errorf("reason = %q, want v2", got)
		}
		if d := e.Decide(context.Background(), user(nil, nil), "a", nil); d.Revision != e.Revision() {
			t.Errorf("decision revision %s, engine %s", d.Revision, e.Revision())
		}
		swaps, reloads := rec.get()
		if !slices.Equal(swaps, []string{e.Revision()}) {
			t.Errorf("OnSwap calls %v, want [%s]", swaps, e.Revision())
		}
		if len(reloads) != 1 || reloads[0] != nil {
			t.Errorf("OnReload calls %v, want [nil]", reloads)
		}
		if e.LastError() != nil {
			t.Errorf("LastError = %v", e.LastError())
		}
	})

	t.Run("unchanged directory keeps the revision and does not call OnSwap", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, simpleFiles("v1"))
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), rec.options())
		oldRev := e.Revision()
		// Rewriting identical content and touching ignored files is no change.
		writeFiles(t, dir, simpleFiles("v1"))
		writeFiles(t, dir, map[string]string{"README.md": "notes", "p_test.rego": "package x\n"})
		for range 3 {
			if err := e.Reload(); err != nil {
				t.Fatalf("Reload: %v", err)
			}
		}
		if e.Revision() != oldRev {
			t.Errorf("revision %s, want %s", e.Revision(), oldRev)
		}
		swaps, reloads := rec.get()
		if len(swaps) != 0 {
			t.Errorf("OnSwap calls %v, want none", swaps)
		}
		if len(reloads) != 3 || slices.ContainsFunc(reloads, func(err error) bool { return err != nil }) {
			t.Errorf("OnReload calls %v, want [nil nil nil]", reloads)
		}
	})

	t.Run("broken change keeps the old policy and sets LastError; mending clears it", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, simpleFiles("v1"))
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), rec.options())
		oldRev := e.Revision()

		writeFiles(t, dir, map[string]string{"p.rego": broken, "data.json": `{"visible": ["a"], "reason": "v2"}`})
		err := e.Reload()
		if err == nil {
			t.Fatal("Reload of a broken policy succeeded")
		}
		if !strings.Contains(err.Error(), "p.rego:") {
			t.Errorf("error %q does not name p.rego and its line", err)
		}
		if e.Revision() != oldRev {
			t.Errorf("revision %s, want the old %s", e.Revision(), oldRev)
		}
		if got := reasonOf(t, e); got != "v1" {
			t.Errorf("reason = %q, want the old policy's v1", got)
		}
		if got := visibleNames(t, e, user(nil, nil)); !slices.Equal(got, []string{"a"}) {
			t.Errorf("Visible = %v, want the old policy's [a]", got)
		}
		if e.LastError() == nil || e.LastError().Error() != err.Error() {
			t.Errorf("LastError = %v, want %v", e.LastError(), err)
		}
		swaps, reloads := rec.get()
		if len(swaps) != 0 {
			t.Errorf("OnSwap calls %v, want none", swaps)
		}
		if len(reloads) != 1 || reloads[0] == nil || reloads[0].Error() != err.Error() {
			t.Errorf("OnReload calls %v, want [%v]", reloads, err)
		}

		// Still broken: the error stays.
		if err := e.Reload(); err == nil || e.LastError() == nil {
			t.Errorf("second Reload = %v, LastError %v; want both set", err, e.LastError())
		}

		// Mended with a new policy: swapped in, error cleared.
		writeFiles(t, dir, simpleFiles("v3"))
		if err := e.Reload(); err != nil {
			t.Fatalf("Reload after mending: %v", err)
		}
		if e.LastError() != nil {
			t.Errorf("LastError after mending = %v", e.LastError())
		}
		if got := reasonOf(t, e); got != "v3" {
			t.Errorf("reason = %q, want v3", got)
		}
		swaps, reloads = rec.get()
		if !slices.Equal(swaps, []string{e.Revision()}) {
			t.Errorf("OnSwap calls %v, want [%s]", swaps, e.Revision())
		}
		if len(reloads) != 3 || reloads[2] != nil {
			t.Errorf("OnReload calls %v, want [err err nil]", reloads)
		}
	})

	t.Run("mending back to the policy in force clears LastError without a swap", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, simpleFiles("v1"))
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), rec.options())
		oldRev := e.Revision()
		writeFiles(t, dir, map[string]string{"p.rego": broken})
		if err := e.Reload(); err == nil {
			t.Fatal("Reload of a broken policy succeeded")
		}
		writeFiles(t, dir, simpleFiles("v1"))
		if err := e.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if e.LastError() != nil || e.Revision() != oldRev {
			t.Errorf("LastError %v, revision %s; want nil, %s", e.LastError(), e.Revision(), oldRev)
		}
		if swaps, _ := rec.get(); len(swaps) != 0 {
			t.Errorf("OnSwap calls %v, want none", swaps)
		}
	})

	t.Run("policy that loses package mcp.authz is refused on reload", func(t *testing.T) {
		t.Parallel()
		dir := policyDir(t, simpleFiles("v1"))
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{})
		writeFiles(t, dir, map[string]string{"p.rego": "package other\n\nallow := true\n"})
		if err := e.Reload(); err == nil || !strings.Contains(err.Error(), "package mcp.authz") {
			t.Errorf("Reload = %v, want an error about package mcp.authz", err)
		}
		if got := reasonOf(t, e); got != "v1" {
			t.Errorf("reason = %q, want the old policy's v1", got)
		}
	})

	t.Run("embedded policy reloads to the same revision", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		e := mustNew(t, policy.Source{FS: defaultpolicy.FS}, defaultCatalog, rec.options())
		rev := e.Revision()
		if err := e.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if e.Revision() != rev {
			t.Errorf("revision %s, want %s", e.Revision(), rev)
		}
		if swaps, _ := rec.get(); len(swaps) != 0 {
			t.Errorf("OnSwap calls %v, want none", swaps)
		}
	})
}
