package server

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/ratelimit"
)

// Limiter counts calls against the limits of their decisions
// (docs/policy-contract.md, "limits"): a *ratelimit.Store.
type Limiter interface {
	Take(ctx context.Context, limits []policy.Limit) (ratelimit.Verdict, error)
	Ping(ctx context.Context) error
	// Kind is "memory" or "redis", for /readyz.
	Kind() string
}

// storePingInterval is how often the limit store is pinged, so that
// toolgate_limits_store_up and /readyz follow it without traffic.
const storePingInterval = 5 * time.Second

// admit counts an allowed call against its limits, once, before the call
// is recorded: a call without room is refused (rate_limited), and so is
// one whose limits cannot be counted unless limits.on_store_error is allow
// (limits_unavailable). The decision naming the limits may come from the
// policy's cache; the counting never does. In dry-run the call is logged
// as it would have been answered, and runs.
func (s *Server) admit(ctx context.Context, c *callDecision) {
	if c.admitted {
		return
	}
	c.admitted = true
	if !c.Allowed || len(c.Limits) == 0 {
		return
	}
	v, err := s.limiter.Take(ctx, c.Limits)
	s.storeUp(err == nil)
	switch {
	case err != nil && s.cfg.Limits.OnStoreError == "allow":
		s.log.Warn("rate limits not counted: the limit store is unreachable; the call runs (limits.on_store_error: allow)",
			"decision_id", c.ID, "tool", s.metrics.tool(c.tool), "error", err)
		return
	case err != nil:
		c.code, c.storeErr = outcome.LimitsUnavailable, err
	case !v.Allowed:
		c.code, c.limit, c.retryAfter = outcome.RateLimited, &v.Limit, v.RetryAfter
	default:
		return
	}
	var waived bool
	if c.result, waived = s.dryRunOf(resultOf(c.code)); waived {
		return
	}
	c.Allowed = false
	if c.code == outcome.RateLimited {
		s.metrics.rateLimited.WithLabelValues(s.metrics.tool(c.tool)).Inc()
	}
}

// refusedCall is the tool result of a call that does not run: a denial, or a
// limit without room (docs/http.md).
func refusedCall(c *callDecision) *mcp.CallToolResult {
	meta := map[string]any{"decision_id": c.ID}
	var res *mcp.CallToolResult
	switch c.code {
	case outcome.RateLimited:
		secs := retrySeconds(c.retryAfter)
		meta["retry_after_seconds"] = secs
		res = mcp.NewToolResultError(fmt.Sprintf("Rate limit exceeded: %s; retry after %ds", c.limit.Which(), secs))
	case outcome.LimitsUnavailable:
		res = mcp.NewToolResultError("Rate limits cannot be checked: the limit store is unreachable; the call was not run")
	default:
		res = mcp.NewToolResultError("Permission denied: " + c.Reason)
	}
	res.Meta = mcp.NewMetaFromMap(meta)
	return res
}

// retrySeconds is a retry-after in whole seconds, rounded up: a client
// that waits that long finds room.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func (s *Server) storeUp(up bool) {
	if up {
		s.metrics.limitsStoreUp.Set(1)
	} else {
		s.metrics.limitsStoreUp.Set(0)
	}
}

// pingStore is a Task that pings the limit store every storePingInterval.
func (s *Server) pingStore(ctx context.Context) (func(), error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(storePingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.checkStore(ctx)
			}
		}
	}()
	return func() { <-done }, nil
}

// checkStore pings the limit store, bounded by limits.store_timeout, and
// reports whether it answered.
func (s *Server) checkStore(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.StoreTimeout)
	defer cancel()
	up := s.limiter.Ping(ctx) == nil
	s.storeUp(up)
	return up
}
