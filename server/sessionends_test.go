package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/ratelimit/redistest"
	"github.com/toolgate/toolgate/server"
)

// withFleetRedis gives the gate the fleet's session key and limits.store on
// Redis, which also holds the ends of the fleet's sessions.
func withFleetRedis(url string) gateOption {
	return func(c *config.Config, _ *server.Options) {
		c.Sessions.KeyEnv = "TOOLGATE_TEST_SESSION_KEY"
		c.Limits.Store = url
	}
}

// A DELETE on one replica ends the session on all of them (MCP
// basic/transports, "Session Management": a server that ended a session
// answers 404 to it): on the replica that created it and on one that had
// adopted it (told by Redis pub/sub), and on one that never saw it (which
// asks Redis before it adopts an id).
func TestADeletedSessionEndsOnEveryReplica(t *testing.T) {
	t.Setenv("TOOLGATE_TEST_SESSION_KEY", "a fleet key of at least thirty-two bytes")
	rs := redistest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	tenants := []*idptest.Tenant{tn}
	a := startGate(t, tenants, withFleetRedis(rs.URL()))
	b := startGate(t, tenants, withFleetRedis(rs.URL()))
	c := startGate(t, tenants, withFleetRedis(rs.URL()))
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{a.Config.ResourceURL(), b.Config.ResourceURL(), c.Config.ResourceURL()}})

	session := a.rawPost(alice, "", initializeBody).Header.Get("Mcp-Session-Id")
	for _, g := range []*gate{a, b} {
		if resp := g.rawPost(alice, session, listBody); resp.StatusCode != http.StatusOK {
			t.Fatalf("the session on %s before the DELETE: %d", g.URL, resp.StatusCode)
		}
	}
	if code := b.deleteSession(alice, session); code != http.StatusOK {
		t.Fatalf("DELETE on b: %d", code)
	}
	if resp := c.rawPost(alice, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the ended session on a replica that never saw it: %d, want 404", resp.StatusCode)
	}
	if resp := b.rawPost(alice, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the ended session where it was deleted: %d, want 404", resp.StatusCode)
	}
	// a learns of the end by a message: within a moment, not at once.
	deadline := time.Now().Add(5 * time.Second)
	for a.rawPost(alice, session, listBody).StatusCode != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the replica that created the session still serves it 5s after its DELETE elsewhere")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A new session of the same principal is not touched.
	other := a.rawPost(alice, "", initializeBody).Header.Get("Mcp-Session-Id")
	if resp := c.rawPost(alice, other, listBody); resp.StatusCode != http.StatusOK {
		t.Errorf("another session of the principal: %d", resp.StatusCode)
	}
}

// While Redis is unreachable, sessions keep working across replicas (an id
// still serves its own principal only) and a DELETE ends the session where
// it is received. An end recorded while a replica was not subscribed (its
// message missed) is caught up when it subscribes again.
func TestSessionEndsWithRedisDown(t *testing.T) {
	t.Setenv("TOOLGATE_TEST_SESSION_KEY", "a fleet key of at least thirty-two bytes")
	rs := redistest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	tenants := []*idptest.Tenant{tn}
	a := startGate(t, tenants, withFleetRedis(rs.URL()))
	b := startGate(t, tenants, withFleetRedis(rs.URL()))
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{a.Config.ResourceURL(), b.Config.ResourceURL()}})

	rs.Stop()
	session := a.rawPost(alice, "", initializeBody).Header.Get("Mcp-Session-Id")
	if resp := b.rawPost(alice, session, listBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session on another replica with Redis down: %d", resp.StatusCode)
	}
	if code := b.deleteSession(alice, session); code != http.StatusOK {
		t.Fatalf("DELETE with Redis down: %d", code)
	}
	if resp := b.rawPost(alice, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the session where it was deleted with Redis down: %d, want 404", resp.StatusCode)
	}
	if resp := a.rawPost(alice, session, listBody); resp.StatusCode != http.StatusOK {
		t.Errorf("the session where it was created, its end unknown there: %d", resp.StatusCode)
	}

	// Redis back, empty: the end is recorded as another replica's DELETE
	// records it (sessionend.Redis.End), without the message a missed.
	rs.Restart()
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port)})
	defer rc.Close()
	if err := rc.Set(context.Background(), "toolgate:session-ended:"+session, 1, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.rawPost(alice, session, listBody).StatusCode != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("a still serves the session 10s after Redis came back with its end")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
