package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/upstream"
)

// Subscriptions to upstream resources (MCP server/resources,
// "Subscriptions"; docs/policy-contract.md, "Prompts and resources"):
//
//   - toolgate advertises resources.subscribe while an upstream that is up
//     does (initialize's answer is amended: mcp-go's capabilities are fixed
//     when it is built, before any upstream is listed).
//   - resources/subscribe is decided like a read (input.action
//     "resources/subscribe"): an unknown or hidden URI gets the answer of an
//     unknown one, a refused one "Permission denied"; an allowed one is
//     forwarded on the principal's session with the upstream (upstream
//     package) and recorded for the client session; mcp-go then answers it.
//   - The upstream's notifications/resources/updated reach the client
//     sessions subscribed to the URI on that upstream (and, with
//     per-principal upstream sessions, of the principal whose session it
//     came on) whose principal may read it now: visible_resources (cached)
//     and allow are asked again at each delivery, as for a read.
//   - resources/unsubscribe and the end of a client session drop its
//     subscriptions; the upstream is told when a principal's last one goes.

// UpstreamSubscriptions are the upstreams' resource subscriptions; an
// *upstream.Pool is one.
type UpstreamSubscriptions interface {
	// Subscribable reports whether an upstream advertises resources.subscribe.
	Subscribable() bool
	// Subscribe and Unsubscribe forward for the principal in ctx, for the
	// client session holder.
	Subscribe(ctx context.Context, server, uri, holder string) error
	Unsubscribe(ctx context.Context, server, uri, holder string) error
}

// subscription is one client session's subscription to a URI.
type subscription struct {
	server    string // the upstream that serves the URI
	principal *sessionPrincipal
	// owner is the session's owner (Server.owner): the key of the
	// principal's upstream sessions, which for token-less clients is their
	// address, not the principal's key.
	owner string
}

// sessionPrincipal is the principal of a subscribed session's latest
// request: its updates are decided for the claims it holds now, not those
// of the token it subscribed with.
type sessionPrincipal struct{ atomic.Pointer[idp.Principal] }

// subscriptions are the client sessions' subscriptions, by URI.
type subscriptions struct {
	mu         sync.Mutex
	byURI      map[string]map[string]subscription // URI -> session id -> subscription
	principals sync.Map                           // session id -> *sessionPrincipal, while it has subscriptions
}

// seen records p as the principal of session's latest request, if the
// session has subscriptions; it is on every request, without a lock.
func (s *subscriptions) seen(session string, p *idp.Principal) {
	if v, ok := s.principals.Load(session); ok {
		v.(*sessionPrincipal).Store(p)
	}
}

// add records session's subscription to uri on server for p, whose
// session's owner is owner, unless it has one.
func (s *subscriptions) add(uri, session, server string, p *idp.Principal, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byURI[uri][session]; ok {
		return
	}
	if s.byURI == nil {
		s.byURI = map[string]map[string]subscription{}
	}
	if s.byURI[uri] == nil {
		s.byURI[uri] = map[string]subscription{}
	}
	sp := &sessionPrincipal{}
	sp.Store(p)
	v, _ := s.principals.LoadOrStore(session, sp)
	s.byURI[uri][session] = subscription{server: server, principal: v.(*sessionPrincipal), owner: owner}
}

// forgetPrincipal drops session's principal once it has no subscription;
// the caller holds mu.
func (s *subscriptions) forgetPrincipal(session string) {
	for _, subs := range s.byURI {
		if _, ok := subs[session]; ok {
			return
		}
	}
	s.principals.Delete(session)
}

func (s *subscriptions) remove(uri, session string) (subscription, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.byURI[uri][session]
	delete(s.byURI[uri], session)
	if len(s.byURI[uri]) == 0 {
		delete(s.byURI, uri)
	}
	s.forgetPrincipal(session)
	return sub, ok
}

// removeSession drops every subscription of session and returns them.
func (s *subscriptions) removeSession(session string) map[string]subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]subscription{}
	for uri, subs := range s.byURI {
		if sub, ok := subs[session]; ok {
			out[uri] = sub
			delete(subs, session)
			if len(subs) == 0 {
				delete(s.byURI, uri)
			}
		}
	}
	s.principals.Delete(session)
	return out
}

// of are the sessions subscribed to uri on server.
func (s *subscriptions) of(uri, server string) map[string]subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]subscription{}
	for id, sub := range s.byURI[uri] {
		if sub.server == server {
			out[id] = sub
		}
	}
	return out
}

func (s *Server) upstreamSubs() UpstreamSubscriptions {
	u, _ := s.others.(UpstreamSubscriptions)
	return u
}

// advertiseSubscribe is mcp-go's after-initialize hook: resources.subscribe
// is advertised only while an upstream offers it.
func (s *Server) advertiseSubscribe(_ context.Context, _ any, _ *mcp.InitializeRequest, res *mcp.InitializeResult) {
	if res.Capabilities.Resources != nil {
		u := s.upstreamSubs()
		res.Capabilities.Resources.Subscribe = u != nil && u.Subscribable()
	}
}

// noListenSubscriptions is mcp-go's before-subscriptions/listen hook: a
// 2026-07-28 stream's resourceSubscriptions are not established (the
// acknowledgement says so), since the gate neither decides nor forwards
// them; resources/subscribe in a session is how a client subscribes.
func (s *Server) noListenSubscriptions(_ context.Context, _ any, req *mcp.SubscriptionsListenRequest) {
	req.Params.Notifications.ResourceSubscriptions = nil
}

// subscription decides, forwards and records a resources/subscribe, or
// drops a resources/unsubscribe, before mcp-go answers it. ok is false
// when the gate answered.
func (s *Server) subscription(w http.ResponseWriter, ctx context.Context, method string, body []byte, session string) bool {
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Params struct {
			URI string `json:"uri"`
		} `json:"params"`
	}
	subs := s.upstreamSubs()
	if json.Unmarshal(body, &msg) != nil || len(msg.ID) == 0 || msg.Params.URI == "" || subs == nil {
		return true // mcp-go answers it
	}
	uri := msg.Params.URI
	if method == string(mcp.MethodResourcesUnsubscribe) {
		if session == "" {
			return true
		}
		if sub, ok := s.subs.remove(uri, session); ok {
			s.unsubscribeUpstream(session, sub, uri)
		}
		return true
	}
	server, template, known := s.others.Route(uri)
	var d policy.Decision
	if known {
		d = s.decideOtherAction(ctx, policy.ActionResourceSubscribe, policy.Target{URI: uri, URITemplate: template}, server)
	}
	switch {
	case !known || !d.Visible:
		writeResourceNotFound(w, msg.ID, uri, false)
		return false
	case !d.Allowed:
		writeRPCError(w, msg.ID, mcp.INVALID_REQUEST, fmt.Sprintf("Permission denied: %s (decision %s)", d.Reason, d.ID))
		return false
	case session == "":
		// A notification is addressed to a session: without one, no
		// update could ever reach the client.
		writeRPCError(w, msg.ID, mcp.INVALID_REQUEST, "resources/subscribe needs an MCP session")
		return false
	}
	// Forwarded even when the session subscribed already: the upstream
	// session that held it may have been lost since.
	p, _ := idp.PrincipalFrom(ctx)
	if err := subs.Subscribe(ctx, server, uri, session); err != nil {
		code := mcp.INTERNAL_ERROR
		if errors.Is(err, upstream.ErrNoSubscriptions) {
			code = mcp.METHOD_NOT_FOUND
		}
		writeRPCError(w, msg.ID, code, err.Error())
		return false
	}
	owner, _ := ctx.Value(ownerKey{}).(string)
	s.subs.add(uri, session, server, p, owner)
	return true
}

// unsubscribeUpstream ends session's subscription to uri upstream (the
// pool tells the upstream when it was the last on its upstream session).
func (s *Server) unsubscribeUpstream(session string, sub subscription, uri string) {
	ctx := upstream.WithOwner(idp.WithPrincipal(context.Background(), sub.principal.Load()), sub.owner)
	if err := s.upstreamSubs().Unsubscribe(ctx, sub.server, uri, session); err != nil {
		s.log.Warn("upstream resources/unsubscribe failed", "upstream", sub.server, "error", err)
	}
}

// sessionEnded drops the subscriptions of a client session that ended.
func (s *Server) sessionEnded(id string) {
	if s.upstreamSubs() == nil {
		return
	}
	for uri, sub := range s.subs.removeSession(id) {
		go s.unsubscribeUpstream(id, sub, uri)
	}
}

// resourceUpdated passes an upstream's notifications/resources/updated
// (upstream.Options.OnResourceUpdated) to the client sessions subscribed
// to its URI on that upstream whose principal may read it now. principal
// is the owner of the upstream session it came on (the principal's key,
// or a token-less client's address), "" for a shared one.
func (s *Server) resourceUpdated(server, principal string, params map[string]any) {
	uri, _ := params["uri"].(string)
	subs := s.subs.of(uri, server)
	if len(subs) == 0 {
		return
	}
	route, template, known := s.others.Route(uri)
	if !known || route != server {
		return // no longer served from there: no one may read it
	}
	ctx := context.Background()
	may := map[string]bool{} // principal fingerprint -> may read
	for id, sub := range subs {
		if principal != "" && sub.owner != principal {
			continue // another owner's upstream session tells it
		}
		p := sub.principal.Load()
		fp := p.Fingerprint()
		ok, decided := may[fp]
		if !decided {
			ok = s.mayRead(ctx, p, uri, template)
			may[fp] = ok
		}
		if !ok {
			s.log.Debug("resource update withheld: the principal may not read it now", "upstream", server)
			continue
		}
		if err := s.mcp.SendNotificationToSpecificClient(id, mcp.MethodNotificationResourceUpdated, params); err != nil {
			s.log.Debug("resource update not delivered", "upstream", server, "error", err)
		}
	}
}

// mayRead reports whether p may read uri now: visible_resources (cached
// per principal) first, then allow for a resources/read.
func (s *Server) mayRead(ctx context.Context, p *idp.Principal, uri, template string) bool {
	if s.dryRun {
		return true
	}
	a := s.actions()
	if a == nil {
		return false
	}
	visible, err := a.VisibleResources(ctx, p)
	if err != nil || !visible[uri] && (template == "" || !visible[template]) {
		return false
	}
	return a.DecideAction(ctx, p, policy.ActionResourceRead, policy.Target{URI: uri, URITemplate: template}).Allowed
}

// writeResourceNotFound is mcp-go's answer for a URI no resource or
// template serves.
func writeResourceNotFound(w http.ResponseWriter, id json.RawMessage, uri string, modern bool) {
	code := mcp.RESOURCE_NOT_FOUND
	if modern {
		code = mcp.INVALID_PARAMS
	}
	writeRPCError(w, id, code, fmt.Sprintf("handler not found for resource URI '%s': %s", uri, mcpserver.ErrResourceNotFound))
}
