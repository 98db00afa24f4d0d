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
	m    atomic.Pointer[map[string]V]
}

func newChildren[V any](with func(...string) V) *children[V] {
	return &children[V]{with: with}
}

// labelSep joins label values into a memo key. Label values are UTF-8
// (Prometheus requires it), in which the byte 0xff never occurs, so no two
// lists of values share a key.
const labelSep = "\xff"

// get returns the child of the label values.
func (c *children[V]) get(values ...string) V {
	var buf [128]byte
	key := buf[:0]
	for i, v := range values {
		if i > 0 {
			key = append(key, labelSep...)
		}
		key = append(key, v...)
	}
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[string(key)]; ok { // a lookup by string(key) does not allocate
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[string]V{}
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[string(key)]; ok {
			return v
		}
		next = maps.Clone(*m)
	}
	v := c.with(append([]string(nil), values...)...)
	next[string(key)] = v
	c.m.Store(&next)
	return v
}
