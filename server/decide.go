package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
)

// callDecision is the policy's decision on one call, as enforced (d), and
// what the decision log and metrics say of it.
type callDecision struct {
	policy.Decision
	logged    policy.Decision // before dry-run turned a denial into an allow
	principal *idp.Principal
	tool      string
	args      []byte
	result    string
	code      outcome.Code
	at        time.Time
	eval      time.Duration
	recorded  bool
	// The counting of its limits (admit): the limit that refused the call
	// and when it has room, or the store's error.
	admitted   bool
	limit      *policy.Limit
	retryAfter time.Duration
	storeErr   error
}

// decide asks the policy about one call. In dry-run the decision is
// returned allowed (nothing is hidden or refused) and logged with what would
// have happened. It is counted and logged by record once mcp-go has taken
// the message for a tools/call (callAccepted) or the gate answers it, so
// that no decision-log line stands for a call that mcp-go refused before it
// was dispatched (not JSON-RPC 2.0, no id, not JSON content).
func (s *Server) decide(ctx context.Context, p *idp.Principal, tool string, args []byte) *callDecision {
	if d := s.withheld(p, tool, args); d != nil {
		return d
	}
	start := time.Now()
	d := s.policy.DecideRaw(ctx, p, tool, args)
	eval := time.Since(start)
	s.metrics.evalTime[policy.ActionCall].Observe(eval.Seconds())
	c := &callDecision{Decision: d, logged: d, principal: p, tool: tool, args: args,
		code: DecisionCode(d), at: start.Add(eval), eval: eval}
	var waived bool
	if c.result, waived = s.dryRunOf(resultOf(c.code)); waived {
		c.Visible, c.Allowed, c.RequiredScopes, c.Err = true, true, nil, nil
	}
	return c
}

// dryRunOf is the result to record of a decision whose result is result,
// and whether the refusal is waived: in dry-run (policy.dry_run) nothing
// is refused, and a denial is recorded as dry_run_deny (an error stays an
// error).
func (s *Server) dryRunOf(result string) (recorded string, waived bool) {
	if !s.dryRun || result == resultAllow {
		return result, false
	}
	if result == resultDeny {
		return resultDryRunDeny, true
	}
	return result, true
}

// DecisionCode is the reason code of a call's decision (docs/http.md): what
// the client is answered, the metric's reason label and the decision log's
// reason_code.
func DecisionCode(d policy.Decision) outcome.Code {
	switch {
	case errors.Is(d.Err, policy.ErrArgumentsInvalid):
		return outcome.ArgumentsInvalid
	case d.Err != nil:
		return outcome.EvaluationError
	case !d.Visible:
		return outcome.NotVisible
	case !d.Allowed && len(d.RequiredScopes) > 0:
		return outcome.InsufficientScope
	case !d.Allowed:
		return outcome.PolicyDenied
	}
	return outcome.Allowed
}

// resultOf is the result label of a decision's code.
func resultOf(c outcome.Code) string {
	switch c {
	case outcome.Allowed:
		return resultAllow
	case outcome.EvaluationError, outcome.LimitsUnavailable:
		return resultError
	}
	return resultDeny
}

// record counts and logs a call's decision, once.
func (s *Server) record(c *callDecision) {
	if c.recorded {
		return
	}
	c.recorded = true
	reason, err := c.logged.Reason, c.logged.Err
	e := entry{
		ID: c.ID, Principal: c.principal, Action: policy.ActionCall, Tool: c.tool, Server: s.catalog.Load().serverOf(c.tool), Arguments: c.args,
		Result: c.result, Code: c.code, RequiredScopes: c.logged.RequiredScopes,
		Revision: c.Revision, At: c.at, Eval: c.eval,
	}
	switch c.code {
	case outcome.RateLimited: // the key is logged, never a metric label
		reason, e.LimitKey, e.RetryAfter = "rate limit exceeded: "+c.limit.Which(), c.limit.Key, c.retryAfter
		s.log.Log(context.Background(), outcome.Of(c.code).Level, "call rate limited",
			"decision_id", c.ID, "tool", s.metrics.tool(c.tool), "limit_key", c.limit.Key, "retry_after", c.retryAfter)
	case outcome.LimitsUnavailable:
		reason, err = "the limit store is unreachable", c.storeErr
	}
	if err != nil {
		s.log.Log(context.Background(), outcome.Of(c.code).Level, "call denied: "+string(c.code),
			"decision_id", c.ID, "tool", s.metrics.tool(c.tool), "revision", c.Revision, "error", err)
	}
	s.metrics.decisions.WithLabelValues(policy.ActionCall, s.metrics.tool(c.tool), c.result, string(c.code)).Inc()
	if c.result == resultAllow {
		reason = ""
	}
	e.Reason, e.Err = reason, err
	s.decisions.write(e)
}

// visibleTools asks the policy which tools p may see, then logs and counts
// the decision. On an evaluation error nothing is visible (outside dry-run).
func (s *Server) visibleTools(ctx context.Context, p *idp.Principal) map[string]bool {
	start := time.Now()
	visible, err := s.policy.Visible(ctx, p)
	return s.listDecided(policy.ActionList, p, start, visible, err, s.catalog.Load().names, true)
}

// listDecided logs and counts the decision on a list (tools/list,
// prompts/list, resources/list) of p over catalog, the names or URIs the
// list can hold, and returns what is listed: the visible ones, none on an
// error, and in dry-run all of them, the decision saying what would have
// been hidden (docs/observability.md, "Dry-run"). names says whether the
// line names them (URIs are only counted: a list of them can be long).
func (s *Server) listDecided(action string, p *idp.Principal, start time.Time, visible map[string]bool, err error, catalog []string, names bool) map[string]bool {
	eval := time.Since(start)
	e := entry{ID: policy.NewID(), Principal: p, Action: action, Result: resultAllow, Code: outcome.Allowed, Revision: s.policy.Revision(), At: start.Add(eval), Eval: eval, Err: err}
	if err != nil {
		visible = nil
		e.Result, e.Code = resultError, outcome.EvaluationError
		s.log.Error("policy evaluation failed; nothing listed", "action", action, "decision_id", e.ID, "revision", e.Revision, "error", err)
	}
	if s.dryRun {
		hidden := false
		for _, name := range catalog {
			if !visible[name] {
				hidden = true
				if names {
					e.Hidden = append(e.Hidden, name)
				}
			}
		}
		if hidden && err == nil {
			e.Result, e.Code = resultDryRunDeny, outcome.NotVisible
		}
		visible = set(catalog)
	}
	if names {
		e.Visible = []string{}
		for _, name := range catalog {
			if visible[name] {
				e.Visible = append(e.Visible, name)
			}
		}
	}
	s.metrics.decisions.WithLabelValues(action, labelAllTools, e.Result, string(e.Code)).Inc()
	s.metrics.evalTime[action].Observe(eval.Seconds())
	s.decisions.write(e)
	if visible == nil {
		return map[string]bool{}
	}
	return visible
}

// decisionKey is the context key of the decision the gate made for a
// request's tools/call (a *callDecision); requests of any other method
// carry none.
type decisionKey struct{}

// decisionMade is the decision the gate made for a call of tool in this
// request, or nil: none was made, or it was for another name (mcp-go may
// read a body's tool name otherwise than the gate did; see rpcscan_test.go).
func decisionMade(ctx context.Context, tool string) *callDecision {
	if d, ok := ctx.Value(decisionKey{}).(*callDecision); ok && d.tool == tool {
		return d
	}
	return nil
}

// decisionFor returns the decision already made for a call of tool in this
// request, or makes one; either way counted against its limits and
// recorded (the call has reached the tool), once.
func (s *Server) decisionFor(ctx context.Context, p *idp.Principal, tool string, args map[string]any) *callDecision {
	c := decisionMade(ctx, tool)
	if c == nil {
		raw, err := json.Marshal(args)
		if err != nil {
			raw = []byte("not JSON") // refused by the policy engine: a denial
		}
		c = s.decide(ctx, p, tool, raw)
	}
	s.admit(ctx, c)
	s.record(c)
	return c
}
