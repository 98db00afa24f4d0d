package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/toolgate/toolgate/policy"
	defaultpolicy "github.com/toolgate/toolgate/rego"
)

// watchWithin is how long a watched change may take to be served.
const watchWithin = 5 * time.Second

// watchPolicy shows the tools of data.visible and of data.extra.visible and
// gives data.reason as the reason of every call.
const watchPolicy = `package mcp.authz

visible_tools := {t | some t in data.visible} | {t | some t in data.extra.visible}

reason := data.reason
`

// startWatch builds an engine on dir and watches it until the test ends.
func startWatch(t *testing.T, dir string, opts policy.Options) *policy.Engine {
	t.Helper()
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a", "b", "c"), opts)
	if err := e.Watch(t.Context()); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return e
}

func TestWatch(t *testing.T) {
	t.Parallel()

	t.Run("changed data.json is reloaded", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := startWatch(t, dir, rec.options())
		oldRev := e.Revision()
		writeFiles(t, dir, map[string]string{"data.json": `{"visible": ["a", "b"], "reason": "v2"}`})
		eventually(t, watchWithin, "the changed data.json was not reloaded", func() bool { return e.Revision() != oldRev })
		if got := reasonOf(t, e); got != "v2" {
			t.Errorf("reason = %q, want v2", got)
		}
		if got := visibleNames(t, e, user(nil, nil)); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("Visible = %v, want [a b]", got)
		}
		if swaps, _ := rec.get(); !slices.Contains(swaps, e.Revision()) {
			t.Errorf("OnSwap calls %v, want one with %s", swaps, e.Revision())
		}
	})

	t.Run("file written in place is reloaded", func(t *testing.T) {
		t.Parallel()
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := startWatch(t, dir, policy.Options{})
		oldRev := e.Revision()
		if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"visible": ["a"], "reason": "v2"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, watchWithin, "the rewritten data.json was not reloaded", func() bool { return e.Revision() != oldRev })
		if got := reasonOf(t, e); got != "v2" {
			t.Errorf("reason = %q, want v2", got)
		}
	})

	t.Run("burst of writes is reloaded once", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v0"}`})
		e := startWatch(t, dir, rec.options())
		oldRev := e.Revision()
		for _, v := range []string{"v1", "v2", "v3", "v4", "v5"} {
			writeFiles(t, dir, map[string]string{"data.json": `{"visible": ["a"], "reason": "` + v + `"}`})
		}
		eventually(t, watchWithin, "the burst was not reloaded", func() bool { return e.Revision() != oldRev })
		time.Sleep(3 * policy.Debounce)
		if got := reasonOf(t, e); got != "v5" {
			t.Errorf("reason = %q, want v5", got)
		}
		if swaps, _ := rec.get(); len(swaps) != 1 {
			t.Errorf("OnSwap calls %v, want one", swaps)
		}
	})

	t.Run("new subdirectory with a data file is picked up and watched", func(t *testing.T) {
		t.Parallel()
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := startWatch(t, dir, policy.Options{})
		writeFiles(t, dir, map[string]string{"extra/data.json": `{"visible": ["b"]}`})
		eventually(t, watchWithin, "extra/data.json was not loaded", func() bool {
			got, err := e.Visible(context.Background(), user(nil, nil))
			return err == nil && got["b"]
		})
		// The new folder is watched itself: a change inside it is seen.
		rev := e.Revision()
		writeFiles(t, dir, map[string]string{"extra/data.json": `{"visible": ["c"]}`})
		eventually(t, watchWithin, "a change inside the new folder was not reloaded", func() bool { return e.Revision() != rev })
		if got := visibleNames(t, e, user(nil, nil)); !slices.Equal(got, []string{"a", "c"}) {
			t.Errorf("Visible = %v, want [a c]", got)
		}
	})

	t.Run("broken change keeps the last good policy until mended", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := startWatch(t, dir, rec.options())
		oldRev := e.Revision()
		writeFiles(t, dir, map[string]string{"p.rego": "package mcp.authz\n\nallow if {\n"})
		eventually(t, watchWithin, "the broken change did not set LastError", func() bool { return e.LastError() != nil })
		if e.Revision() != oldRev || reasonOf(t, e) != "v1" {
			t.Errorf("revision %s reason %q; want the old %s v1", e.Revision(), reasonOf(t, e), oldRev)
		}
		writeFiles(t, dir, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v2"}`})
		eventually(t, watchWithin, "the mended policy was not reloaded", func() bool { return e.LastError() == nil })
		if got := reasonOf(t, e); got != "v2" {
			t.Errorf("reason = %q, want v2", got)
		}
	})

	t.Run("removing the whole directory keeps the last good policy", func(t *testing.T) {
		t.Parallel()
		var rec recorder
		dir := filepath.Join(t.TempDir(), "policy")
		writeFiles(t, dir, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`, "sub/data.json": `{}`})
		e := startWatch(t, dir, rec.options())
		oldRev := e.Revision()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		eventually(t, watchWithin, "removing the directory did not set LastError", func() bool { return e.LastError() != nil })
		if e.Revision() != oldRev {
			t.Errorf("revision %s, want the old %s", e.Revision(), oldRev)
		}
		if got := reasonOf(t, e); got != "v1" {
			t.Errorf("reason = %q, want v1", got)
		}
		if got := visibleNames(t, e, user(nil, nil)); !slices.Equal(got, []string{"a"}) {
			t.Errorf("Visible = %v, want [a]", got)
		}
		_, reloads := rec.get()
		if len(reloads) == 0 || reloads[len(reloads)-1] == nil {
			t.Errorf("OnReload calls %v, want the last with an error", reloads)
		}

		// The directory put back (a deploy that replaces it) is loaded.
		writeFiles(t, dir, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["b"], "reason": "v2"}`})
		eventually(t, watchWithin, "the recreated directory was not loaded", func() bool { return e.LastError() == nil && e.Revision() != oldRev })
		if got := reasonOf(t, e); got != "v2" {
			t.Errorf("reason = %q, want v2", got)
		}
	})

	t.Run("directory replaced by a rename is loaded", func(t *testing.T) {
		t.Parallel()
		parent := t.TempDir()
		dir := filepath.Join(parent, "policy")
		writeFiles(t, dir, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := startWatch(t, dir, policy.Options{})
		next := filepath.Join(parent, "policy.next")
		writeFiles(t, next, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v2"}`})
		if err := os.Rename(dir, filepath.Join(parent, "policy.old")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(next, dir); err != nil {
			t.Fatal(err)
		}
		eventually(t, watchWithin, "the replaced directory was not loaded", func() bool { return reasonOf(t, e) == "v2" })
		// And the new directory is watched in turn.
		rev := e.Revision()
		writeFiles(t, dir, map[string]string{"data.json": `{"visible": ["a"], "reason": "v3"}`})
		eventually(t, watchWithin, "a change in the replaced directory was not reloaded", func() bool { return e.Revision() != rev })
		if got := reasonOf(t, e); got != "v3" {
			t.Errorf("reason = %q, want v3", got)
		}
	})

	t.Run("ConfigMap style symlink swap is loaded", func(t *testing.T) {
		t.Parallel()
		// Kubernetes mounts a ConfigMap as symlinks into a hidden, versioned
		// folder and swaps the ..data link by a rename.
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"..v1/p.rego": watchPolicy, "..v1/data.json": `{"visible": ["a"], "reason": "v1"}`})
		mustSymlink(t, "..v1", filepath.Join(dir, "..data"))
		mustSymlink(t, "..data/p.rego", filepath.Join(dir, "p.rego"))
		mustSymlink(t, "..data/data.json", filepath.Join(dir, "data.json"))
		e := startWatch(t, dir, policy.Options{})
		if got := reasonOf(t, e); got != "v1" {
			t.Fatalf("reason = %q, want v1", got)
		}
		writeFiles(t, dir, map[string]string{"..v2/p.rego": watchPolicy, "..v2/data.json": `{"visible": ["a"], "reason": "v2"}`})
		mustSymlink(t, "..v2", filepath.Join(dir, "..data_tmp"))
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
			t.Fatal(err)
		}
		eventually(t, watchWithin, "the swapped ConfigMap was not loaded", func() bool { return reasonOf(t, e) == "v2" })
		if e.LastError() != nil {
			t.Errorf("LastError = %v", e.LastError())
		}
	})

	t.Run("missing directory is an error", func(t *testing.T) {
		t.Parallel()
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy})
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{})
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := e.Watch(t.Context()); err == nil {
			t.Error("Watch of a missing directory succeeded")
		}
	})
}

func mustSymlink(t *testing.T, oldname, newname string) {
	t.Helper()
	if err := os.Symlink(oldname, newname); err != nil {
		t.Fatal(err)
	}
}

// Not parallel: it counts goroutines, so nothing else may run meanwhile
// (parallel tests only start once the sequential ones are done).
func TestWatchStopsWithContext(t *testing.T) {
	t.Run("cancelled watcher leaves no goroutine and reloads no more", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{})
		baseline := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(context.Background())
		if err := e.Watch(ctx); err != nil {
			cancel()
			t.Fatalf("Watch: %v", err)
		}
		if n := runtime.NumGoroutine(); n <= baseline {
			t.Errorf("goroutines %d with a watcher, baseline %d: no watcher running?", n, baseline)
		}
		cancel()
		eventually(t, 2*time.Second, "watcher goroutines still running after cancel", func() bool {
			return runtime.NumGoroutine() <= baseline
		})
		rev := e.Revision()
		writeFiles(t, dir, map[string]string{"data.json": `{"visible": ["a"], "reason": "v2"}`})
		time.Sleep(4 * policy.Debounce)
		if e.Revision() != rev || reasonOf(t, e) != "v1" {
			t.Errorf("a stopped watcher reloaded: revision %s reason %q", e.Revision(), reasonOf(t, e))
		}
	})

	t.Run("cancelled during a pending reload leaves no goroutine", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"p.rego": watchPolicy, "data.json": `{"visible": ["a"], "reason": "v1"}`})
		e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{})
		baseline := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(context.Background())
		if err := e.Watch(ctx); err != nil {
			cancel()
			t.Fatalf("Watch: %v", err)
		}
		writeFiles(t, dir, map[string]string{"data.json": `{"visible": ["a"], "reason": "v2"}`})
		time.Sleep(policy.Debounce / 4)
		cancel()
		eventually(t, 2*time.Second, "watcher goroutines still running after cancel", func() bool {
			return runtime.NumGoroutine() <= baseline
		})
	})

	t.Run("embedded policy is never watched", func(t *testing.T) {
		e := mustNew(t, policy.Source{FS: defaultpolicy.FS}, defaultCatalog, policy.Options{})
		baseline := runtime.NumGoroutine()
		if err := e.Watch(t.Context()); err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if n := runtime.NumGoroutine(); n > baseline {
			t.Errorf("goroutines %d after Watch of the embedded policy, baseline %d", n, baseline)
		}
	})
}
