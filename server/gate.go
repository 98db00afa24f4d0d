package server

import (
	"context"
	"net"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/upstream"
)

// serveMCP is the gate in front of mcp-go's Streamable HTTP transport. It
// authenticates the request (RFC 6750 §2.1: the bearer token in the
// Authorization header only); refuses a session id that is unknown or
// another principal's, and adopts one of the fleet's (docs/http.md,
// "Sessions"); bounds the body (size and JSON nesting) and the sessions
// of one principal; and decides a tools/call
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
	if session != "" {
		switch s.sessions.check(session, owner, limit) {
		case sessionUnknown:
			s.writeError(w, errSessionUnknown)
			return
		case sessionFull:
			s.writeError(w, tooManySessions(limit))
			return
		}
	}
	ctx := context.WithValue(idp.WithPrincipal(r.Context(), p), ownerKey{}, owner)
	if p.Provider == idp.ProviderAnonymous {
		ctx = upstream.WithOwner(ctx, owner)
	}
	out := mcpWriter(w)
	if session != "" {
		s.subs.seen(session, p)
		ctx = context.WithValue(ctx, sessionKey{}, session)
		out = &listFilter{HTTPResponseWriter: out, told: &s.sessions.told, session: session}
	}
	req := &mcpserver.HTTPRequest{Method: r.Method, URL: r.URL, Header: r.Header, Context: ctx}
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
		case string(mcp.MethodResourcesRead), string(mcp.MethodCompletionComplete):
			if s.others != nil {
				var served bool
				if req.Context, served = s.decideOther(out, req.Context, rpc.Method, body, modern); !served {
					return
				}
			}
		case string(mcp.MethodResourcesSubscribe), string(mcp.MethodResourcesUnsubscribe):
			// Removed by the 2026-07-28 core: mcp-go refuses them there.
			if s.others != nil && !modern && !s.subscription(out, req.Context, rpc.Method, body, session) {
				return
			}
		case string(mcp.MethodToolsCall):
			d := s.decide(req.Context, p, rpc.Params.Name, rpc.Params.Arguments)
			if d.code == outcome.InsufficientScope && !d.Allowed { // allowed in dry-run
				s.record(d) // the gate answers it: the call has reached its end
				s.writeError(w, &stepUp{scopes: d.RequiredScopes, decisionID: d.ID})
				return
			}
			req.Context = context.WithValue(req.Context, decisionKey{}, d)
		}
		if modern {
			ctx, done := s.inflight.track(req.Context, owner, rpc.ID)
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
