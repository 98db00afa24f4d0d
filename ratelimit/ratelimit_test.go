package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/ratelimit"
	"github.com/toolgate/toolgate/ratelimit/redistest"
)

// stores are the memory store and a Redis store on a real redis-server.
func stores(t *testing.T) map[string]*ratelimit.Store {
	t.Helper()
	mem, err := ratelimit.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	red, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: rs.URL(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { red.Close() })
	return map[string]*ratelimit.Store{"memory": mem, "redis": red}
}

// Of M concurrent calls under a limit of N, exactly N are allowed; the
// others are told when to come back.
func TestConcurrentCallsTakeExactlyTheRate(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			limit := policy.Limit{Key: "user " + name, Rate: 10, Per: time.Minute}
			var allowed atomic.Int32
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					v, err := st.Take(context.Background(), []policy.Limit{limit})
					if err != nil {
						t.Error(err)
						return
					}
					if v.Allowed {
						allowed.Add(1)
					} else if v.Limit != limit || v.RetryAfter <= 0 || v.RetryAfter > 6*time.Second {
						t.Errorf("refused with %+v, want the limit and a retry within its emission interval (6s)", v)
					}
				})
			}
			wg.Wait()
			if got := allowed.Load(); got != 10 {
				t.Errorf("%d of 64 allowed, want 10", got)
			}
			// Another key has its own budget.
			if v, _ := st.Take(context.Background(), []policy.Limit{{Key: "other " + name, Rate: 10, Per: time.Minute}}); !v.Allowed {
				t.Error("another key was refused")
			}
		})
	}
}

// A call refused by one of its limits spends nothing of the others.
func TestRefusedCallSpendsNoOtherLimit(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			org := policy.Limit{Key: "org " + name, Rate: 3, Per: time.Hour}
			user := policy.Limit{Key: "user " + name, Rate: 1, Per: time.Hour}
			ctx := context.Background()
			if v, err := st.Take(ctx, []policy.Limit{org, user}); err != nil || !v.Allowed {
				t.Fatalf("first call: %+v %v", v, err)
			}
			for range 5 {
				if v, err := st.Take(ctx, []policy.Limit{org, user}); err != nil || v.Allowed || v.Limit != user {
					t.Fatalf("over the user's limit: %+v %v, want refused by %v", v, err, user)
				}
			}
			// The organisation's budget lost one call, not six.
			for i := range 2 {
				if v, _ := st.Take(ctx, []policy.Limit{org}); !v.Allowed {
					t.Fatalf("the organisation's call %d was refused: the user's refused calls spent its budget", i+2)
				}
			}
			if v, _ := st.Take(ctx, []policy.Limit{org}); v.Allowed {
				t.Fatal("the organisation's fourth call was allowed")
			}
		})
	}
}

// The budget refills at rate per period: one call every per/rate.
func TestBudgetRefills(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			l := policy.Limit{Key: "refill " + name, Rate: 2, Per: 400 * time.Millisecond}
			ctx := context.Background()
			for range 2 {
				if v, _ := st.Take(ctx, []policy.Limit{l}); !v.Allowed {
					t.Fatal("refused within the rate")
				}
			}
			v, _ := st.Take(ctx, []policy.Limit{l})
			if v.Allowed {
				t.Fatal("allowed over the rate")
			}
			time.Sleep(v.RetryAfter + 20*time.Millisecond)
			if v, _ := st.Take(ctx, []policy.Limit{l}); !v.Allowed {
				t.Fatalf("refused after the retry-after it gave")
			}
		})
	}
}

// Redis down: an error, not a verdict; back: counting resumes.
func TestRedisDownIsAnError(t *testing.T) {
	rs := redistest.Start(t)
	st, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: rs.URL(), Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	l := []policy.Limit{{Key: "k", Rate: 1, Per: time.Hour}}
	if v, err := st.Take(ctx, l); err != nil || !v.Allowed {
		t.Fatalf("%+v %v", v, err)
	}
	rs.Stop()
	if _, err := st.Take(ctx, l); err == nil {
		t.Fatal("no error with Redis stopped")
	}
	if st.Ping(ctx) == nil {
		t.Fatal("Ping: no error with Redis stopped")
	}
	rs.Restart() // empty: the budget starts full
	if v, err := st.Take(ctx, l); err != nil || !v.Allowed {
		t.Fatalf("after Redis came back: %+v %v", v, err)
	}
	if v, err := st.Take(ctx, l); err != nil || v.Allowed {
		t.Fatalf("after Redis came back, over the limit: %+v %v", v, err)
	}
}

func TestRedisURLRefused(t *testing.T) {
	if _, err := ratelimit.NewRedis(ratelimit.RedisOptions{URL: "http://x"}); err == nil {
		t.Fatal("an http URL was taken")
	}
}
