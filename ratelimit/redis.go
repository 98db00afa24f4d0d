package ratelimit

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/toolgate/toolgate/policy"
)

// RedisOptions say how to reach Redis.
type RedisOptions struct {
	// URL is redis://host:port/db, or rediss:// for TLS.
	URL string
	// PasswordEnv names the environment variable holding the password;
	// the URL carries none.
	PasswordEnv string
	// Timeout bounds one exchange (dial, read, write), so that a Redis
	// that is down refuses a limited call quickly.
	Timeout time.Duration
}

// NewRedis is a store on Redis, shared by every replica that names it. It
// connects lazily: a Redis down at start refuses limited calls only.
func NewRedis(o RedisOptions) (*Store, error) {
	opts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("limits.store: %w", err)
	}
	if o.PasswordEnv != "" {
		opts.Password = os.Getenv(o.PasswordEnv)
	}
	if o.Timeout > 0 {
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	}
	opts.MaxRetries = 1
	client := redis.NewClient(opts)
	r := &redisGCRA{limiter: redis_rate.NewLimiter(client)}
	return &Store{kind: "redis", g: r,
		ping:  func(ctx context.Context) error { return client.Ping(ctx).Err() },
		close: client.Close, client: client}, nil
}

// redisGCRA is redis_rate's GCRA: one script per limit, atomic in Redis.
type redisGCRA struct{ limiter *redis_rate.Limiter }

func (r *redisGCRA) allow(ctx context.Context, l policy.Limit, n int) (bool, time.Duration, error) {
	res, err := r.limiter.AllowN(ctx, storeKey(l), redis_rate.Limit{Rate: l.Rate, Burst: l.Rate, Period: l.Per}, n)
	if err != nil {
		return false, 0, err
	}
	if n == 0 {
		return res.Remaining >= 1, 0, nil
	}
	return res.Allowed > 0, res.RetryAfter, nil
}
