package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
)

// checkOrigin refuses a browser request from an origin that is neither
// public_url's nor allowed (MCP transports, "Security Warning": servers MUST
// validate Origin, against DNS rebinding), and a Host that names neither
// public_url's host nor loopback. Origins are compared as originKey says,
// hosts without regard to case (RFC 3986 §6.2.2.1). It runs before
// authentication, and lets a page of an allowed origin read the answers
// (allowOrigin).
func (s *Server) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !s.origins[originKey(origin)] {
			s.writeError(w, errOriginForbidden)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if !strings.EqualFold(host, s.publicHost) && !idp.IsLoopbackHost(host) {
			s.writeError(w, errOriginForbidden)
			return
		}
		if origin != "" && allowOrigin(w, r, origin) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveMCP is the gate in front of mcp-go's Streamable HTTP transport. It
// authenticates the request (RFC 6750 §2.1: the bearer token in the
// Authorization header only); refuses a session id that is unknown or
// another principal's (docs/http.md, "Sessions"); bounds the body (size and
// JSON nesting) and the sessions of one principal; and decides a tools/call
// before MCP runs it, so that a step-up can be the HTTP 403 the MCP
// authorization spec asks for ("Scope challenge handling"). mcp-go then gets
// the body as read and a context that carries the principal, for the tools,
// and the call's decision, which the tool filter and the handler middleware
// enforce.
func (s *Server) serveMCP(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	owner, limit := s.owner(p, r)
	session := r.Header.Get(mcpserver.HeaderKeySessionID)
	if session != "" && !s.sessions.owns(session, owner) {
		s.writeError(w, errSessionUnknown)
		return
	}
	slot := &toolDecision{}
	req := &mcpserver.HTTPRequest{Method: r.Method, URL: r.URL, Header: r.Header,
		Context: context.WithValue(idp.WithPrincipal(r.Context(), p), decisionKey{}, slot)}
	out := mcpWriter(w)
	switch r.Method {
	case http.MethodGet: // a stream, with or without a session id: it holds a place while open
		release, ok := s.sessions.openStream(owner, limit)
		if !ok {
			s.writeError(w, tooManySessions(limit))
			return
		}
		defer release()
	case http.MethodPost:
		body, err := readBody(w, r, s.cfg.Limits.MaxBodyBytes)
		if err != nil {
			s.writeError(w, err)
			return
		}
		rpc, depth, ok := scanRequest(body) // the common case, without decoding
		if !ok {
			depth = jsonDepth(body)
		}
		if depth > s.cfg.Limits.MaxJSONDepth {
			s.writeError(w, tooDeep(s.cfg.Limits.MaxJSONDepth))
			return
		}
		req.Body = body
		if !ok {
			if rpc, ok = decodeRequest(body); !ok {
				// mcp-go would answer it, and for an initialize still mint
				// and keep a session that no one counts: refuse it here.
				s.writeError(w, errUnreadableMessage)
				return
			}
		}
		modern := mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion))
		switch rpc.Method {
		case string(mcp.MethodInitialize): // opens a session, whatever id came with it
			if !s.sessions.mayOpen(owner, limit) {
				s.writeError(w, tooManySessions(limit))
				return
			}
			out = &binding{HTTPResponseWriter: out, bind: func(id string) { s.sessions.bind(id, owner) }}
		case string(mcp.MethodSubscriptionsListen): // the 2026-07-28 stream: a place while open
			release, ok := s.sessions.openStream(owner, limit)
			if !ok {
				s.writeError(w, tooManySessions(limit))
				return
			}
			defer release()
		case string(mcp.MethodNotificationCancelled):
			if modern {
				s.inflight.cancel(owner, body)
				out.WriteHeader(http.StatusAccepted)
				return
			}
		case string(mcp.MethodToolsCall):
			d := s.decide(req.Context, p, rpc.Params.Name, rpc.Params.Arguments)
			if d.Visible && !d.Allowed && len(d.RequiredScopes) > 0 && d.Err == nil {
				s.record(d) // the gate answers it: the call has reached its end
				s.writeError(w, &stepUp{scopes: d.RequiredScopes, decisionID: d.ID})
				return
			}
			slot.tool, slot.made = rpc.Params.Name, true
			slot.callDecision = d
		}
		if modern {
			ctx, done := s.inflight.track(req.Context, owner, body)
			defer done()
			req.Context = ctx
		}
	}
	s.streamable.Handle(out, req)
}

// owner is whose sessions and in-flight requests a request's are, and how
// many places that owner may hold. A token's holder is its issuer and
// subject; token-less clients (anonymous: true) are told apart by their
// address, so that one of them can neither use another's session nor take
// every anonymous place. (Behind a reverse proxy every client has the
// proxy's address: it is not read from a header a client could set.)
func (s *Server) owner(p *idp.Principal, r *http.Request) (string, int) {
	if p.Provider != idp.ProviderAnonymous {
		return p.Key(), s.cfg.Limits.MaxSessionsPerPrincipal
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "anonymous\xff" + host, s.cfg.Limits.MaxAnonymousSessionsPerAddress
}

// mcpWriter is w as mcp-go writes a response: the metrics' statusRecorder
// is one already.
func mcpWriter(w http.ResponseWriter) mcpserver.HTTPResponseWriter {
	if mw, ok := w.(mcpserver.HTTPResponseWriter); ok {
		return mw
	}
	return &statusRecorder{ResponseWriter: w, code: http.StatusOK}
}

// binding binds the session id of an initialize response to the principal
// before any of the response leaves, so that the id serves its principal
// from the moment the client can know it.
type binding struct {
	mcpserver.HTTPResponseWriter
	bind  func(id string)
	bound bool
}

func (b *binding) once() {
	if !b.bound {
		b.bound = true
		if id := b.Header().Get(mcpserver.HeaderKeySessionID); id != "" {
			b.bind(id)
		}
	}
}

func (b *binding) WriteHeader(code int) {
	b.once()
	b.HTTPResponseWriter.WriteHeader(code)
}

func (b *binding) Write(p []byte) (int, error) {
	b.once()
	return b.HTTPResponseWriter.Write(p)
}

func (b *binding) Flush() {
	b.once()
	b.HTTPResponseWriter.Flush()
}

// principal is who the request comes from: the holder of its bearer token
// (RFC 6750 §2.1: in the Authorization header only), or the anonymous
// principal where the configuration allows one.
func (s *Server) principal(r *http.Request) (*idp.Principal, error) {
	// A token in the query string leaks into logs and histories: refuse it
	// even beside a good header (MCP authorization, "Token Requirements").
	if r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
		return nil, s.refuseToken(idp.ReasonInQuery)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		if s.cfg.Anonymous {
			return idp.Anonymous(), nil
		}
		return nil, s.refuseToken(idp.ReasonMissing)
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, s.refuseToken(idp.ReasonNotBearer)
	}
	return s.verifier.Verify(r.Context(), strings.TrimSpace(token))
}

// refuseToken is a request refused before any token reached the verifier,
// counted as the verifier counts its refusals (issuer unknown).
func (s *Server) refuseToken(reason idp.Reason) error {
	s.metrics.tokenValidated("", reason)
	return &idp.Error{Reason: reason}
}

// rpcRequest is the part of a JSON-RPC request the gate reads.
type rpcRequest struct {
	Method string `json:"method"`
	Params struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"params"`
}

// decodeRequest is scanRequest's fallback. (Apart, so that only the
// fallback puts a request on the heap.)
func decodeRequest(body []byte) (req rpcRequest, ok bool) {
	return req, json.Unmarshal(body, &req) == nil
}

// readBody reads a request body of at most limit bytes: a *tooLarge past
// it, errBadRequest when it cannot be read. A body of known length is read
// in one allocation of its size.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		if r.ContentLength > limit+lingerBytes {
			return nil, &tooLarge{} // more than the drain would read: not drained
		}
		return nil, &tooLarge{rest: r.Body, max: r.ContentLength}
	}
	var body []byte
	var err error
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		if over := (*http.MaxBytesError)(nil); errors.As(err, &over) {
			return nil, &tooLarge{rest: r.Body, max: lingerBytes}
		}
		return nil, errBadRequest
	}
	return body, nil
}

// jsonDepth is the deepest nesting of arrays and objects in a JSON text,
// found without decoding it (strings and their escapes are skipped).
func jsonDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

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
}

// decide asks the policy about one call. In dry-run the decision is
// returned allowed (nothing is hidden or refused) and logged with what would
// have happened. It is counted and logged by record once mcp-go has taken
// the message for a tools/call (callAccepted) or the gate answers it, so
// that no decision-log line stands for a call that mcp-go refused before it
// was dispatched (not JSON-RPC 2.0, no id, not JSON content).
func (s *Server) decide(ctx context.Context, p *idp.Principal, tool string, args []byte) *callDecision {
	start := time.Now()
	d := s.policy.DecideRaw(ctx, p, tool, args)
	eval := time.Since(start)
	s.metrics.evalTime[policy.ActionCall].Observe(eval.Seconds())
	c := &callDecision{Decision: d, logged: d, principal: p, tool: tool, args: args,
		code: DecisionCode(d), at: start.Add(eval), eval: eval}
	c.result = resultOf(c.code)
	if s.dryRun && c.result != resultAllow {
		if c.result == resultDeny {
			c.result = resultDryRunDeny
		}
		c.Visible, c.Allowed, c.RequiredScopes, c.Err = true, true, nil, nil
	}
	return c
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
	case outcome.EvaluationError:
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
	if c.logged.Err != nil {
		s.log.Log(context.Background(), outcome.Of(c.code).Level, "call denied: "+string(c.code),
			"decision_id", c.ID, "tool", s.metrics.tool(c.tool), "revision", c.Revision, "error", c.logged.Err)
	}
	s.metrics.decisions.WithLabelValues(policy.ActionCall, s.metrics.tool(c.tool), c.result, string(c.code)).Inc()
	reason := c.logged.Reason
	if c.result == resultAllow {
		reason = ""
	}
	s.decisions.write(entry{
		ID: c.ID, Principal: c.principal, Action: policy.ActionCall, Tool: c.tool, Arguments: c.args,
		Result: c.result, Code: c.code, Reason: reason, RequiredScopes: c.logged.RequiredScopes,
		Revision: c.Revision, At: c.at, Eval: c.eval, Err: c.logged.Err,
	})
}

// visibleTools asks the policy which tools p may see, then logs and counts
// the decision. On an evaluation error nothing is visible (outside dry-run).
func (s *Server) visibleTools(ctx context.Context, p *idp.Principal) map[string]bool {
	start := time.Now()
	visible, err := s.policy.Visible(ctx, p)
	eval := time.Since(start)
	e := entry{ID: policy.NewID(), Principal: p, Action: policy.ActionList, Result: resultAllow, Code: outcome.Allowed, Revision: s.policy.Revision(), At: start.Add(eval), Eval: eval, Err: err}
	if err != nil {
		e.Result, e.Code = resultError, outcome.EvaluationError
		s.log.Error("policy evaluation failed; no tool listed", "decision_id", e.ID, "revision", e.Revision, "error", err)
	}
	if s.dryRun {
		for _, name := range s.catalog {
			if !visible[name] {
				e.Hidden = append(e.Hidden, name)
			}
		}
		if len(e.Hidden) > 0 && err == nil {
			e.Result, e.Code = resultDryRunDeny, outcome.NotVisible
		}
		visible = set(s.catalog)
	}
	e.Visible = []string{}
	for _, name := range s.catalog {
		if visible[name] {
			e.Visible = append(e.Visible, name)
		}
	}
	s.metrics.decisions.WithLabelValues(policy.ActionList, labelAllTools, e.Result, string(e.Code)).Inc()
	s.metrics.evalTime[policy.ActionList].Observe(eval.Seconds())
	s.decisions.write(e)
	return visible
}

type decisionKey struct{}

// toolDecision is the decision made for a call of tool in this request,
// once made is set.
type toolDecision struct {
	tool string
	made bool
	*callDecision
}

// callAccepted is mcp-go's before-call-tool hook: the message is a
// tools/call that mcp-go dispatches, so the decision made for it is
// recorded, whatever the call's answer (a result, a denial, a tool that
// does not exist or is hidden).
func (s *Server) callAccepted(ctx context.Context, _ any, req *mcp.CallToolRequest) {
	if d, ok := ctx.Value(decisionKey{}).(*toolDecision); ok && d.made && d.tool == req.Params.Name {
		s.record(d.callDecision)
	}
}

// decisionFor returns the decision already made for a call of tool in this
// request, or makes one (and records it: the call has reached the tool).
func (s *Server) decisionFor(ctx context.Context, p *idp.Principal, tool string, args map[string]any) policy.Decision {
	if d, ok := ctx.Value(decisionKey{}).(*toolDecision); ok && d.made && d.tool == tool {
		return d.Decision
	}
	raw, err := json.Marshal(args)
	if err != nil {
		raw = []byte("not JSON") // refused by the policy engine: a denial
	}
	c := s.decide(ctx, p, tool, raw)
	s.record(c)
	return c.Decision
}

// filterTools is mcp-go's tool filter, applied to tools/list and to each
// tools/call: a tool the principal may not see is absent, and calling it
// gets the same error as a tool that does not exist.
func (s *Server) filterTools(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	p, ok := idp.PrincipalFrom(ctx)
	if !ok {
		return nil
	}
	if d, ok := ctx.Value(decisionKey{}).(*toolDecision); ok && d.made && len(tools) == 1 && tools[0].Name == d.tool {
		if d.Visible {
			return tools
		}
		return nil
	}
	visible := s.visibleTools(ctx, p)
	out := make([]mcp.Tool, 0, len(visible))
	for _, t := range tools {
		if visible[t.Name] {
			out = append(out, t)
		}
	}
	return out
}

// enforceCall wraps every tool handler: the call runs only when the policy
// allows it; any other denial is a tool result with isError and the text
// "Permission denied: <reason>" (docs/policy-contract.md, "How a decision reaches the client").
func (s *Server) enforceCall(next mcpserver.ToolHandlerFunc) mcpserver.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		p, ok := idp.PrincipalFrom(ctx)
		if !ok {
			return mcp.NewToolResultError("Permission denied: no principal"), nil
		}
		tool := s.metrics.tool(req.Params.Name)
		d := s.decisionFor(ctx, p, req.Params.Name, req.GetArguments())
		if !d.Allowed {
			s.metrics.toolCalls.WithLabelValues(tool, "denied").Inc()
			res := mcp.NewToolResultError("Permission denied: " + d.Reason)
			res.Meta = mcp.NewMetaFromMap(map[string]any{"decision_id": d.ID})
			return res, nil
		}
		start := time.Now()
		res, err := runTool(ctx, next, req)
		outcome := "success"
		if err != nil || res == nil || res.IsError {
			outcome = "error"
		}
		s.metrics.toolCalls.WithLabelValues(tool, outcome).Inc()
		s.metrics.toolDuration.WithLabelValues(tool).Observe(time.Since(start).Seconds())
		return res, err
	}
}

// runTool runs a tool's handler; a panic in it is the call's error, not the
// process's end. (mcp-go's WithRecovery does the same, as one more
// middleware built on every call.)
func runTool(ctx context.Context, h mcpserver.ToolHandlerFunc, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("panic recovered in %s tool handler: %v", req.Params.Name, r)
		}
	}()
	return h(ctx, req)
}
