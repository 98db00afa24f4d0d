// Package ratelimit counts tool calls against the limits a policy attaches
// to them (docs/policy-contract.md, "limits"). Counting is GCRA, the generic
// cell rate algorithm (ITU-T I.371), as libraries implement it: in this
// process by throttled's GCRA on its memory store, or shared by every
// replica on Redis by go-redis/redis_rate's script. Both are given the same
// parameters, so a limit means the same on either: rate calls at once from
// a full budget, which refills by one every per/rate.
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/toolgate/toolgate/policy"
)

// Verdict is the answer for one call's limits.
type Verdict struct {
	Allowed bool
	// Limit and RetryAfter, when refused: the limit without room, and
	// when it will have room for one call.
	Limit      policy.Limit
	RetryAfter time.Duration
}

// Store is where the budgets are kept.
type Store struct {
	kind   string // "memory" or "redis"
	g      gcra
	serial *sync.Mutex // memory: the peeks and takes of one call are one step
	ping   func(context.Context) error
	close  func() error
	client *redis.Client // redis only
}

// gcra is one library's GCRA on one store.
type gcra interface {
	// allow spends n calls of l's budget when it has room for them; n = 0
	// spends nothing and says whether there is room for one call.
	allow(ctx context.Context, l policy.Limit, n int) (ok bool, retryAfter time.Duration, err error)
}

// Kind is "memory" or "redis".
func (s *Store) Kind() string { return s.kind }

// Ping reports whether the store can be reached.
func (s *Store) Ping(ctx context.Context) error { return s.ping(ctx) }

// Client is the store's Redis client, which the fleet's other shared state
// (the ends of sessions, package sessionend) uses too; nil for memory.
func (s *Store) Client() *redis.Client { return s.client }

// Close releases the store's connections.
func (s *Store) Close() error { return s.close() }

// Take spends one call of every limit when each has room, and refuses the
// call otherwise, naming the first limit without room.
//
// With several limits, each is first asked whether it has room, and a
// limit without room is taken first, so that a call refused by one limit
// spends nothing of the others (a user over their own limit does not use
// up their organisation's). On the memory store the whole is one step; on
// Redis the limits are separate keys, so two calls racing for the last
// unit of one limit may each have spent one of the limits before it: a
// refused call then counts against those, never the other way round (no
// limit is ever overrun).
func (s *Store) Take(ctx context.Context, limits []policy.Limit) (Verdict, error) {
	if len(limits) == 0 {
		return Verdict{Allowed: true}, nil
	}
	if s.serial != nil {
		s.serial.Lock()
		defer s.serial.Unlock()
	}
	order := limits
	if len(limits) > 1 {
		for i, l := range limits {
			room, _, err := s.g.allow(ctx, l, 0)
			if err != nil {
				return Verdict{}, err
			}
			if !room {
				order = append([]policy.Limit{l}, limits[:i]...)
				order = append(order, limits[i+1:]...)
				break
			}
		}
	}
	for _, l := range order {
		ok, retry, err := s.g.allow(ctx, l, 1)
		if err != nil {
			return Verdict{}, err
		}
		if !ok {
			return Verdict{Limit: l, RetryAfter: retry}, nil
		}
	}
	return Verdict{Allowed: true}, nil
}

// storeKey is where a limit's budget lives: its rate and period are part
// of it, so that a policy that changes them, or names one key with two
// rates, starts a budget of its own instead of reading another's.
func storeKey(l policy.Limit) string {
	return fmt.Sprintf("toolgate:%d/%s:%s", l.Rate, l.Per, l.Key)
}
