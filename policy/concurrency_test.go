package policy_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/toolgate/toolgate/policy"
)

// Readers calling Decide and Visible while the policy is reloaded back and
// forth always get the whole answer of one of the two policies.
func TestConcurrentDecideVisibleAndReload(t *testing.T) {
	t.Parallel()
	// The two policies differ in their module and in their data, so a mix of
	// one's module with the other's data gives an answer of neither.
	policyA := map[string]string{
		"p.rego": `package mcp.authz

visible_tools := {t | some t in data.visible}

allow if input.tool.name == "shared"

reason := concat(":", ["A", data.tag])
`,
		"data.json": `{"visible": ["shared", "only_a"], "tag": "a"}`,
	}
	policyB := map[string]string{
		"p.rego": `package mcp.authz

visible_tools := {t | some t in data.visible}

allow := false

reason := concat(":", ["B", data.tag])

required_scopes := {"b:write"}
`,
		"data.json": `{"visible": ["shared", "only_b"], "tag": "b"}`,
	}
	catalog := catalogOf("shared", "only_a", "only_b")
	revA := mustNew(t, policy.Source{Dir: policyDir(t, policyA)}, catalog, policy.Options{}).Revision()
	revB := mustNew(t, policy.Source{Dir: policyDir(t, policyB)}, catalog, policy.Options{}).Revision()
	if revA == revB {
		t.Fatalf("the two policies have the same revision %s", revA)
	}
	type answer struct {
		visible, allowed bool
		reason           string
		scopes           string
	}
	wantDecide := map[string]answer{
		revA: {visible: true, allowed: true, reason: "A:a", scopes: "[]"},
		revB: {visible: true, allowed: false, reason: "B:b", scopes: "[b:write]"},
	}
	wantVisible := map[string]bool{"[only_a shared]": true, "[only_b shared]": true}

	dir := policyDir(t, policyA)
	var swaps atomic.Int64
	e := mustNew(t, policy.Source{Dir: dir}, catalog, policy.Options{
		Logger: quietLogger(),
		OnSwap: func(string) { swaps.Add(1) },
	})
	if e.Revision() != revA {
		t.Fatalf("revision %s, want %s", e.Revision(), revA)
	}

	const readers, reloads = 8, 12
	done := make(chan struct{})
	var wg sync.WaitGroup
	var seenMu sync.Mutex
	seen := map[string]int{} // revisions and visible sets answered
	for i := range readers {
		wg.Go(func() {
			local := map[string]int{}
			defer func() {
				seenMu.Lock()
				for k, v := range local {
					seen[k] += v
				}
				seenMu.Unlock()
			}()
			p := user(nil, nil)
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				if (i+n)%2 == 0 {
					d := e.Decide(context.Background(), p, "shared", map[string]any{"n": n})
					if d.Err != nil {
						t.Errorf("Decide: %v", d.Err)
						return
					}
					want, ok := wantDecide[d.Revision]
					got := answer{d.Visible, d.Allowed, d.Reason, fmt.Sprint(d.RequiredScopes)}
					if !ok || got != want {
						t.Errorf("Decide at revision %s = %+v, want %+v", d.Revision, got, want)
						return
					}
					local[d.Revision]++
				} else {
					set, err := e.Visible(context.Background(), p)
					if err != nil {
						t.Errorf("Visible: %v", err)
						return
					}
					key := fmt.Sprint(slices.Sorted(maps.Keys(set)))
					if !wantVisible[key] {
						t.Errorf("Visible = %s, want one of %v", key, slices.Sorted(maps.Keys(wantVisible)))
						return
					}
					local[key]++
				}
			}
		})
	}

	for i := range reloads {
		next := policyB
		if i%2 == 1 {
			next = policyA
		}
		writeFiles(t, dir, next)
		if err := e.Reload(); err != nil {
			t.Errorf("Reload %d: %v", i, err)
		}
	}
	close(done)
	wg.Wait()

	if got := swaps.Load(); got != reloads {
		t.Errorf("OnSwap called %d times for %d alternating reloads", got, reloads)
	}
	for _, k := range []string{revA, revB, "[only_a shared]", "[only_b shared]"} {
		if seen[k] == 0 {
			t.Logf("no reader saw %s (answers: %v)", k, seen)
		}
	}
	t.Logf("answers: %v", seen)
}

// New principals' first calls, at once, on a fresh engine: their partial
// evaluations copy catalog terms that other calls' evaluations read, which
// must not race (run under -race; OPA sorts an object's keys lazily).
func TestFirstCallsOfNewPrincipalsAtOnce(t *testing.T) {
	for range 5 {
		e := mustNew(t, policy.Source{Dir: defaultDir}, fastPathCatalog, policy.Options{Logger: quietLogger()})
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := user([]string{"image_generation"}, []string{"images:write"})
				p.Sub = fmt.Sprintf("user-%d", i)
				for _, tool := range []string{"image_generation", "add", "whoami"} {
					_ = e.DecideRaw(context.Background(), p, tool, []byte(`{"prompt":"x","a":1,"b":2}`))
				}
			}()
		}
		wg.Wait()
	}
}
