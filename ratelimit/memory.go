package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/throttled/throttled/v2"
	"github.com/throttled/throttled/v2/store/memstore"

	"github.com/toolgate/toolgate/policy"
)

// MemoryKeys bounds the budgets the memory store keeps: past it, the least
// recently used is forgotten (a forgotten budget starts full again).
const MemoryKeys = 100_000

// NewMemory is a store in this process: each replica counts on its own.
func NewMemory() (*Store, error) {
	st, err := memstore.NewCtx(MemoryKeys)
	if err != nil {
		return nil, err
	}
	m := &memory{store: st, limiters: map[rateKey]*throttled.GCRARateLimiterCtx{}}
	return &Store{kind: "memory", g: m, serial: new(sync.Mutex),
		ping: func(context.Context) error { return nil }, close: func() error { return nil }}, nil
}

type rateKey struct {
	rate int
	per  time.Duration
}

// memory is throttled's GCRA on its memory store. Its limiters are kept
// per rate (they hold no budget, only the rate's parameters) and used
// under Store.serial, so its compare-and-swap never has to retry.
type memory struct {
	store    throttled.GCRAStoreCtx
	limiters map[rateKey]*throttled.GCRARateLimiterCtx
}

func (m *memory) allow(ctx context.Context, l policy.Limit, n int) (bool, time.Duration, error) {
	k := rateKey{l.Rate, l.Per}
	g := m.limiters[k]
	if g == nil {
		var err error
		// A burst of rate - 1 beyond the first call: rate at once.
		g, err = throttled.NewGCRARateLimiterCtx(m.store, throttled.RateQuota{MaxRate: throttled.PerDuration(l.Rate, l.Per), MaxBurst: l.Rate - 1})
		if err != nil {
			return false, 0, err
		}
		m.limiters[k] = g
	}
	limited, res, err := g.RateLimitCtx(ctx, storeKey(l), n)
	if err != nil {
		return false, 0, err
	}
	if n == 0 {
		return res.Remaining >= 1, 0, nil
	}
	return !limited, res.RetryAfter, nil
}
