package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/idp"
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
	return u.subscribe(ctx, uri, holder)
}

// subscribe is Subscribe on u; the caller holds u.subMu.
func (u *Upstream) subscribe(ctx context.Context, uri, holder string) error {
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
	u.forgetLost(ctx, uri, holder)
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

// An upstream session that holds subscriptions can be lost: the upstream
// restarted and forgot it, its process exited, a request on it failed. Its
// subscriptions are then made again on a new session of the same owner,
// after the next listing that finds the upstream up (at most the refresh
// interval later, or the backoff's when it was down), so that clients keep
// hearing updates without subscribing again. A session the upstream forgot
// without toolgate noticing (a restart between two requests) is found by a
// ping at each such listing.

// resubscribe pings the sessions that hold subscriptions, drops those that
// do not answer, and subscribes again what every lost session held.
func (u *Upstream) resubscribe(ctx context.Context) {
	u.mu.Lock()
	held := map[string]*session{}
	if u.ctl != nil && u.ctl.subscribed.Load() > 0 {
		held[""] = u.ctl
	}
	for k, s := range u.sessions {
		if s.subscribed.Load() > 0 {
			held[k] = s
		}
	}
	u.mu.Unlock()
	// No ping starts after one timeout, so that many subscribed sessions of
	// an upstream slow to answer hold the listings up no longer than two
	// requests would; the rest (map order is random) wait for the next.
	round := time.Now().Add(u.cfg.Timeout)
	for k, s := range held {
		if time.Now().After(round) {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
		err := s.c.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			u.log.Warn("upstream session with subscriptions lost; subscribing again on a new one", "error", err)
			u.drop(k, s)
		}
	}
	u.subMu.Lock()
	defer u.subMu.Unlock()
	u.mu.Lock()
	lost := u.lost
	u.lost = nil
	u.mu.Unlock()
	for _, s := range lost {
		sctx := ctx
		if s.owner != nil {
			sctx = WithOwner(idp.WithPrincipal(ctx, s.owner), s.ownerKey)
		}
		for uri, holders := range s.subs {
			for holder := range holders {
				if err := u.subscribe(sctx, uri, holder); err != nil {
					u.log.Warn("upstream resources/subscribe again failed; the client hears no more updates until it subscribes again", "error", err)
					break // the next holder would fail the same way
				}
			}
		}
	}
}

// forgetLost drops holder's subscription to uri from the lost sessions of
// the principal in ctx: it unsubscribed before they were made again. The
// caller holds u.subMu.
func (u *Upstream) forgetLost(ctx context.Context, uri, holder string) {
	key := ""
	if u.cfg.Sessions != "shared" {
		if _, key, _ = sessionOwner(ctx); key == "" {
			return
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.lost {
		if s.ownerKey == key {
			delete(s.subs[uri], holder)
		}
	}
}
