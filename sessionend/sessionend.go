// Package sessionend shares the ends of MCP sessions among the replicas of
// a fleet, on the Redis that counts their rate limits (limits.store): a
// session ended by its owner's DELETE on one replica is answered 404 by
// every replica (MCP basic/transports, "Session Management"), as one
// server would answer it (docs/deployment.md, "Ended sessions").
//
// An end is a key (the id's tombstone, kept for the session idle TTL),
// which a replica reads before it adopts an id it has not seen, and a
// message on a channel, which tells the replicas that already serve the
// id. A replica that was not subscribed when a message was sent reads the
// tombstones of the ids it serves when it subscribes again.
package sessionend

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	channel   = "toolgate:sessions-ended"
	keyPrefix = "toolgate:session-ended:"
	// receiveTimeout is how long a quiet subscription waits before it
	// pings Redis, so that a connection lost without a word is noticed.
	receiveTimeout = 30 * time.Second
	// retryAfter paces the attempts to subscribe while Redis is down.
	retryAfter = time.Second
	// batch bounds the ids read in one MGET.
	batch = 1000
)

// Redis keeps the ends on one Redis.
type Redis struct{ c *redis.Client }

// NewRedis keeps the ends on c, a client of limits.store.
func NewRedis(c *redis.Client) *Redis { return &Redis{c: c} }

// End records that the session id ended, for ttl, and tells the replicas
// subscribed now. The tombstone is written first: a replica that adopts
// the id after the message has been sent reads it.
func (r *Redis) End(ctx context.Context, id string, ttl time.Duration) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyPrefix+id, 1, ttl)
		p.Publish(ctx, channel, id)
		return nil
	})
	return err
}

// Ended reports, for each of ids, whether it has a tombstone.
func (r *Redis) Ended(ctx context.Context, ids []string) ([]bool, error) {
	out := make([]bool, 0, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), batch)
		keys := make([]string, n)
		for i, id := range ids[:n] {
			keys[i] = keyPrefix + id
		}
		vals, err := r.c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			out = append(out, v != nil)
		}
		ids = ids[n:]
	}
	return out, nil
}

// Watch calls ended with each id another replica ends, and resync each
// time it has subscribed (first, and again after a lost connection, when
// messages may have been missed), until ctx is done.
func (r *Redis) Watch(ctx context.Context, ended func(id string), resync func()) {
	ps := r.c.Subscribe(ctx, channel)
	defer ps.Close()
	for {
		msg, err := ps.ReceiveTimeout(ctx, receiveTimeout)
		if ctx.Err() != nil {
			return
		}
		var timeout interface{ Timeout() bool }
		switch m := msg.(type) {
		case *redis.Subscription:
			resync()
		case *redis.Message:
			ended(m.Payload)
		case nil:
			if errors.As(err, &timeout) && timeout.Timeout() {
				err = ps.Ping(ctx) // a lost connection fails here, and is made again
			}
			if err != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(retryAfter):
				}
			}
		}
	}
}
