package upstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
)

// Resource subscriptions (MCP server/resources, "Subscriptions"; issue 16,
// docs/configuration.md, "Prompts and resources of upstreams"). The gate
// decides a client's resources/subscribe and tracks which client session
// subscribed to what; the pool forwards it on the principal's session with
// the upstream, once per URI and session however many client sessions
// (holders) ask, and resources/unsubscribe when the last of them goes. A
// holder that subscribes again after its upstream session was lost is
// subscribed on the new one. The upstream's
// notifications/resources/updated go to Options.OnResourceUpdated with the
// principal of the session they came on.
//
// Which session: the shared one with sessions: shared; else the
// principal's own. A Streamable HTTP upstream sends the updates on the
// session's GET stream, which a principal's calling session does not keep
// open (connect): its subscriptions go on a second session of the
// principal's that does. A stdio process has one stream: its session is
// the principal's process. A session with subscriptions is left by the
// idle sweep.

// listenPrefix keys a principal's listening session in Upstream.sessions.
const listenPrefix = "\x00listen\x00"

// Subscribable reports whether an upstream that is up advertises
// resources.subscribe.
func (p *Pool) Subscribable() bool {
	for _, u := range p.ups {
		if u.subscribable() {
			return true
		}
	}
	return false
}

func (u *Upstream) subscribable() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.up && u.others.subscribe
}

// ErrNoSubscriptions is Subscribe's error for an upstream that does not
// advertise resources.subscribe.
var ErrNoSubscriptions = errors.New("resources subscribe not supported")

// Subscribe subscribes holder (a client session) of the principal in ctx
// to uri on the upstream server (as Route chose). The upstream's error, if
// it answers one, is returned.
func (p *Pool) Subscribe(ctx context.Context, server, uri, holder string) error {
	u := p.upstream(server)
	if u == nil {
		return fmt.Errorf("no upstream %s", server)
	}
	if !u.subscribable() {
		return ErrNoSubscriptions
	}
	u.subMu.Lock()
	defer u.subMu.Unlock()
	var sub *session
	get := func(ctx context.Context) (*session, string, error) {
		s, key, err := u.subscriptionSession(ctx)
		sub = s
		return s, key, err
	}
	if s, _ := u.subscribedSession(ctx); s != nil && len(s.subs[uri]) > 0 {
		s.subs[uri][holder] = true // subscribed upstream already
		return nil
	}
	if _, err := u.sendVia(ctx, get, mcp.MethodResourcesSubscribe, map[string]any{"uri": uri}); err != nil {
		return err
	}
	if sub.subs[uri] == nil {
		sub.subs[uri] = map[string]bool{}
		sub.subscribed.Add(1)
	}
	sub.subs[uri][holder] = true
	return nil
}

// Unsubscribe ends holder's subscription to uri on server; the last one on
// its upstream session is ended upstream too. Without a subscription it
// does nothing.
func (p *Pool) Unsubscribe(ctx context.Context, server, uri, holder string) error {
	u := p.upstream(server)
	if u == nil {
		return nil
	}
	u.subMu.Lock()
	defer u.subMu.Unlock()
	s, key := u.subscribedSession(ctx)
	if s == nil || !s.subs[uri][holder] {
		return nil
	}
	if delete(s.subs[uri], holder); len(s.subs[uri]) > 0 {
		return nil
	}
	delete(s.subs, uri)
	s.subscribed.Add(-1)
	_, err := u.sendVia(ctx, func(context.Context) (*session, string, error) { return s, key, nil },
		mcp.MethodResourcesUnsubscribe, map[string]any{"uri": uri})
	return err
}

// subscriptionSession is the session the subscriptions of the principal in
// ctx go on, opened if need be.
func (u *Upstream) subscriptionSession(ctx context.Context) (*session, string, error) {
	if u.cfg.Sessions == "shared" || len(u.cfg.Command) > 0 {
		return u.sessionFor(ctx)
	}
	p, owner, ok := sessionOwner(ctx)
	if !ok {
		return nil, "", errors.New("no principal")
	}
	key := listenPrefix + owner
	u.mu.Lock()
	s, ok := u.sessions[key]
	if !ok {
		s = u.dial(p, owner, true)
		u.sessions[key] = s
	}
	u.mu.Unlock()
	return s, key, u.wait(ctx, key, s)
}

// subscribedSession is the session the subscriptions of the principal in
// ctx are on, if it is open; nil if not.
func (u *Upstream) subscribedSession(ctx context.Context) (*session, string) {
	key := ""
	if u.cfg.Sessions != "shared" {
		_, owner, ok := sessionOwner(ctx)
		if !ok {
			return nil, ""
		}
		key = owner
		if len(u.cfg.Command) == 0 {
			key = listenPrefix + key
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.ctl
	if key != "" {
		s = u.sessions[key]
	}
	if s == nil {
		return nil, ""
	}
	select {
	case <-s.ready:
		if s.err != nil {
			return nil, ""
		}
	default:
		return nil, "" // still dialling: it has none
	}
	return s, key
}
