package config

import (
	"strings"
	"testing"
	"time"
)

// The rate-limit store (limits.store and its neighbours): memory by
// default, so that the embedded default needs no Redis.
func TestLimitsStoreDefaultsToMemory(t *testing.T) {
	c, err := Parse([]byte("anonymous: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Limits; l.Store != "memory" || l.OnStoreError != "deny" || l.StoreTimeout != 250*time.Millisecond || l.StorePasswordEnv != "" {
		t.Errorf("limits = %+v", l)
	}
}

func TestLimitsStoreAcceptsRedis(t *testing.T) {
	for _, store := range []string{"redis://127.0.0.1:6379/0", "rediss://redis.example:6380", "redis://cache:6379/15", "redis://user@cache:6379/2"} {
		c, err := Parse([]byte("anonymous: true\nlimits:\n  store: " + store + "\n  store_password_env: REDIS_PASSWORD\n  on_store_error: allow\n"))
		if err != nil {
			t.Errorf("%s: %v", store, err)
			continue
		}
		if c.Limits.Store != store || c.Limits.OnStoreError != "allow" {
			t.Errorf("%s: %+v", store, c.Limits)
		}
	}
}

// Every problem of the section at once.
func TestLimitsStoreReportsEveryProblem(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"store: redis", `limits.store: "redis" is not memory nor a redis:// or rediss:// URL`},
		{"store: http://cache:6379", `limits.store: "http://cache:6379" is not memory nor a redis:// or rediss:// URL`},
		{"store: redis:///0", `limits.store: "redis:///0" names no host`},
		{"store: redis://:secret@cache:6379/0", "limits.store: the URL carries a password; name an environment variable with limits.store_password_env"},
		{"store: redis://cache:6379/x", `limits.store: "/x" is not a database number`},
		{"store: redis://cache:6379/0?password=x", "limits.store: the URL has a query"},
		{"store_password_env: REDIS_PASSWORD", "limits.store_password_env: only for a Redis store"},
		{"store: redis://cache:6379\n  store_password_env: A=B", `limits.store_password_env: "A=B" is not an environment variable name`},
		{"on_store_error: maybe", `limits.on_store_error: "maybe" is not one of deny, allow`},
		{"store_timeout: 0s", "limits.store_timeout: 0s is outside 10ms..10s"},
	} {
		_, err := Parse([]byte("anonymous: true\nlimits:\n  " + c.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.yaml, err, c.want)
		}
	}
	_, err := Parse([]byte("anonymous: true\nlimits:\n  store: redis\n  on_store_error: maybe\n  store_timeout: 1h\n"))
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("three problems, one a line: %v", err)
	}
}
