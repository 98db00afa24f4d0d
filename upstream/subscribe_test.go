package upstream

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp"
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

// An upstream that restarts forgets its sessions and their subscriptions:
// the pool finds the lost session at its next listing, and subscribes
// again on a new one, so the updates keep coming without the client
// subscribing again; a holder that unsubscribed meanwhile is not
// subscribed again. With per-principal sessions (the principal's listening
// session) and a shared one (the listing session).
func TestSubscriptionsSurviveAnUpstreamRestart(t *testing.T) {
	for _, sessions := range []string{"per_principal", "shared"} {
		t.Run(sessions, func(t *testing.T) {
			up := upstreamtest.Start(t)
			cfg := upstreamConfig(t, "name: up\nsessions: "+sessions+"\nurl: "+up.URL)
			updated := make(chan string, 10)
			p := startPool(t, Options{RefreshInterval: 50 * time.Millisecond, OnResourceUpdated: func(server, principal string, params map[string]any) {
				if server == "up" && params["uri"] == upstreamtest.LiveURI {
					updated <- principal
				}
			}}, cfg)
			alice, bob := asPrincipal("alice"), asPrincipal("bob")
			if err := p.Subscribe(alice, "up", upstreamtest.LiveURI, "s1"); err != nil {
				t.Fatal(err)
			}
			if err := p.Subscribe(bob, "up", upstreamtest.LiveURI, "s2"); err != nil {
				t.Fatal(err)
			}
			want := 2 // alice's and bob's sessions
			if sessions == "shared" {
				want = 1
			}
			if n := up.Subscribers(upstreamtest.LiveURI); n != want {
				t.Fatalf("%d upstream subscribers, want %d", n, want)
			}

			up.Restart()
			if n := up.Subscribers(upstreamtest.LiveURI); n != 0 {
				t.Fatalf("the restarted upstream has %d subscribers", n)
			}
			// bob unsubscribes before (or after) the pool notices: telling
			// the upstream may fail, as the gate logs.
			_ = p.Unsubscribe(bob, "up", upstreamtest.LiveURI, "s2")
			eventually(t, "alice's subscription made again", func() bool { return up.Subscribers(upstreamtest.LiveURI) == 1 })
			time.Sleep(200 * time.Millisecond) // a few more listings: bob's is not made again
			if n := up.Subscribers(upstreamtest.LiveURI); n != 1 {
				t.Fatalf("%d upstream subscribers after the restart, want alice's alone", n)
			}
			up.Update()
			select {
			case got := <-updated:
				if sessions == "per_principal" && got != "https://issuer.example\x00alice" {
					t.Errorf("the update came as %q's, want alice's", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no update after the restart")
			}
		})
	}
}

// A holder that unsubscribes while its session is lost (the upstream is
// down) is not subscribed again when the upstream is back: on a shared
// session, the last holder's unsubscribe then ends the subscription
// upstream, with no stale holder keeping it.
func TestUnsubscribedWhileLostIsNotSubscribedAgain(t *testing.T) {
	up := upstreamtest.Start(t)
	cfg := upstreamConfig(t, "name: up\nsessions: shared\nurl: "+up.URL)
	p := startPool(t, Options{RefreshInterval: 50 * time.Millisecond}, cfg)
	alice, bob := asPrincipal("alice"), asPrincipal("bob")
	for ctx, holder := range map[context.Context]string{alice: "s1", bob: "s2"} {
		if err := p.Subscribe(ctx, "up", upstreamtest.LiveURI, holder); err != nil {
			t.Fatal(err)
		}
	}
	up.Close()
	eventually(t, "the upstream down", func() bool { return !p.Status()[0].Up })
	if err := p.Unsubscribe(bob, "up", upstreamtest.LiveURI, "s2"); err != nil {
		t.Fatal(err)
	}
	up.Restart()
	if err := up.Reopen(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscription made again", func() bool { return up.Subscribers(upstreamtest.LiveURI) == 1 })
	if err := p.Unsubscribe(alice, "up", upstreamtest.LiveURI, "s1"); err != nil {
		t.Fatal(err)
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 0 {
		t.Errorf("%d upstream subscribers after the last holder unsubscribed", n)
	}
}

// On a stdio upstream, token-less clients' subscriptions go on the process
// of their owner (their address, WithOwner), one each, and unsubscribing
// finds that process again: the last unsubscribe ends the subscription
// there.
func TestStdioSubscriptionsFollowTheOwner(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := startPool(t, Options{}, upstreamConfig(t, fmt.Sprintf("name: up\ncommand: [%q]\nenv: {UPSTREAMTEST_STDIO: \"1\"}", exe)))
	u := p.upstream("up")
	subscribed := func(owner string) int32 {
		u.mu.Lock()
		defer u.mu.Unlock()
		if s := u.sessions[owner]; s != nil {
			return s.subscribed.Load()
		}
		return -1
	}
	anonymous := &idp.Principal{Provider: idp.ProviderAnonymous}
	one, two := "anonymous\xff127.0.0.1", "anonymous\xff127.0.0.2"
	for _, owner := range []string{one, two} {
		ctx := WithOwner(idp.WithPrincipal(context.Background(), anonymous), owner)
		if err := p.Subscribe(ctx, "up", upstreamtest.LiveURI, "client of "+owner); err != nil {
			t.Fatal(err)
		}
		if n := subscribed(owner); n != 1 {
			t.Fatalf("%q's process holds %d subscriptions, want 1", owner, n)
		}
	}
	ctx := WithOwner(idp.WithPrincipal(context.Background(), anonymous), one)
	if err := p.Unsubscribe(ctx, "up", upstreamtest.LiveURI, "client of "+one); err != nil {
		t.Fatal(err)
	}
	if a, b := subscribed(one), subscribed(two); a != 0 || b != 1 {
		t.Errorf("after the first owner unsubscribed: %d and %d subscriptions, want 0 and 1", a, b)
	}
}
