package upstream

import (
	"testing"
	"time"

	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// A principal's subscriptions to a Streamable HTTP upstream go on a
// session of its own that keeps a GET stream; the idle sweep stops the
// principal's calling session but leaves that one while it has
// subscriptions, and its updates come with the principal's key; after
// the last unsubscribe it is swept too.
func TestSubscribedSessionOutlivesTheIdleSweep(t *testing.T) {
	up := upstreamtest.Start(t)
	cfg := upstreamConfig(t, "name: up\nurl: "+up.URL)
	cfg.IdleTimeout = 100 * time.Millisecond
	updated := make(chan string, 10)
	p := startPool(t, Options{OnResourceUpdated: func(server, principal string, params map[string]any) {
		if server == "up" && params["uri"] == upstreamtest.LiveURI {
			updated <- principal
		}
	}}, cfg)
	if !p.Subscribable() {
		t.Fatal("the upstream advertises resources.subscribe, the pool says no")
	}
	ctx := asPrincipal("alice")
	for _, holder := range []string{"s1", "s2", "s1"} { // one subscription upstream for all
		if err := p.Subscribe(ctx, "up", upstreamtest.LiveURI, holder); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(requestsOf(up, "resources/subscribe")); n != 1 {
		t.Errorf("%d resources/subscribe upstream, want 1", n)
	}
	call(t, toolNamed(t, p, "up_echo"), "alice", map[string]any{"text": "hi"})

	u := p.upstream("up")
	has := func(key string) bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		_, ok := u.sessions[key]
		return ok
	}
	key := "https://issuer.example\x00alice"
	// The call opened alice's calling session, used after the listening
	// one: once it is swept, the sweep has passed the other's idle time.
	eventually(t, "the sweep of alice's calling session", func() bool { return !has(key) })
	if !has(listenPrefix + key) {
		t.Fatal("the sweep stopped the session with alice's subscription")
	}
	up.Update()
	select {
	case got := <-updated:
		if got != key {
			t.Errorf("the update came as %q's, want alice's", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no update")
	}

	for _, holder := range []string{"s1", "s1", "s2"} {
		if err := p.Unsubscribe(ctx, "up", upstreamtest.LiveURI, holder); err != nil {
			t.Fatal(err)
		}
		if holder == "s1" && up.Subscribers(upstreamtest.LiveURI) != 1 {
			t.Fatal("unsubscribed upstream while s2 holds the subscription")
		}
	}
	if n := len(requestsOf(up, "resources/unsubscribe")); n != 1 || up.Subscribers(upstreamtest.LiveURI) != 0 {
		t.Errorf("%d resources/unsubscribe upstream, %d subscribers left", n, up.Subscribers(upstreamtest.LiveURI))
	}
	eventually(t, "the sweep of alice's listening session", func() bool { return !has(listenPrefix + key) })
}
