package server

import (
	"maps"
	"sync"
	"sync/atomic"
)

// children memoises the children of one metric vector by their label
// values, so that a request finds its counter with one map read instead of
// the vector's label hashing and lock. Every label value comes from a
// bounded set (see metrics), so the memo is bounded too.
type children[V any] struct {
	with func(...string) V // the vector's WithLabelValues
	mu   sync.Mutex        // serialises misses
	m    atomic.Pointer[map[[4]string]V]
}

func newChildren[V any](with func(...string) V) *children[V] {
	return &children[V]{with: with}
}

// get returns the child of the label values (at most four).
func (c *children[V]) get(values ...string) V {
	var key [4]string
	copy(key[:], values)
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[[4]string]V{}
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
		next = maps.Clone(*m)
	}
	v := c.with(append([]string(nil), values...)...)
	next[key] = v
	c.m.Store(&next)
	return v
}
