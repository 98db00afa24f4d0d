package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Lists of label values that join to the same bytes without the separator
// are still different children, and each list always finds its own.
func TestChildrenKeysDoNotCollide(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"x", "y"})
	c := newChildren(vec.WithLabelValues)
	abc, abC := c.get("a", "bc"), c.get("ab", "c")
	if abc == abC {
		t.Fatal(`{a, bc} and {ab, c} share a child`)
	}
	if c.get("a", "bc") != abc || abc != vec.WithLabelValues("a", "bc") || abC != vec.WithLabelValues("ab", "c") {
		t.Error("a list of values does not find its own child")
	}
	ch := make(chan prometheus.Metric, 8)
	vec.Collect(ch)
	if len(ch) != 2 {
		t.Errorf("%d children, want 2", len(ch))
	}
}
