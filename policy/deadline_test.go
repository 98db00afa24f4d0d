package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/policy"
)

// An evaluation past Options.EvalTimeout is an error, so a denial, and is
// not cached: the next request evaluates again.
func TestEvaluationPastItsDeadlineDenies(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{"p.rego": `package mcp.authz

slow contains x if {
	some i in numbers.range(1, 3000000)
	x := sprintf("%d", [i])
}

visible_tools := {"a"} if count(slow) > 0

allow := true
`})
	// Loading runs the policy check, whose evaluations have their own
	// budget, so even this policy loads promptly.
	start := time.Now()
	e := mustNew(t, policy.Source{Dir: dir}, catalogOf("a"), policy.Options{EvalTimeout: 20 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("loading a slow policy took %s", took)
	}
	for range 2 {
		start := time.Now()
		d := e.Decide(context.Background(), user(nil, nil), "a", nil)
		if d.Allowed || d.Err == nil || !strings.Contains(d.Err.Error(), "cancel") {
			t.Errorf("decision past the deadline: allowed=%v err=%v", d.Allowed, d.Err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the evaluation ran %s despite a 20ms deadline", took)
		}
		visible, err := e.Visible(context.Background(), user(nil, nil))
		if err == nil || len(visible) != 0 {
			t.Errorf("visible past the deadline: %v %v", visible, err)
		}
	}
}
