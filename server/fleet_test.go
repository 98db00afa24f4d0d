package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

// withSessionKey names the environment variable of the fleet's session key
// (sessions.key_env).
func withSessionKey(env string) gateOption {
	return func(c *config.Config, _ *server.Options) { c.Sessions.KeyEnv = env }
}

// withReplica gives the gate its replica id.
func withReplica(id string) gateOption {
	return withOptions(func(o *server.Options) { o.ReplicaID = id })
}

const listBody = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

// A session opened on one replica serves its principal on every replica
// that has the fleet's key, and no one else on any of them: not another
// principal, not an altered id, not a replica without the key.
func TestASessionServesItsPrincipalOnEveryReplica(t *testing.T) {
	t.Setenv("TOOLGATE_TEST_SESSION_KEY", "a fleet key of at least thirty-two bytes")
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	tenants := []*idptest.Tenant{tn}
	a := startGate(t, tenants, withSessionKey("TOOLGATE_TEST_SESSION_KEY"), withReplica("a"))
	b := startGate(t, tenants, withSessionKey("TOOLGATE_TEST_SESSION_KEY"), withReplica("b"))
	lone := startGate(t, tenants, withReplica("lone"))
	aud := []string{a.Config.ResourceURL(), b.Config.ResourceURL(), lone.Config.ResourceURL()}
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: aud})
	mallory := tn.Token(idptest.Claims{Sub: "auth0|mallory", Audience: aud})

	resp := a.rawPost(alice, "", initializeBody)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || session == "" {
		t.Fatalf("initialize on a: %d, session %q", resp.StatusCode, session)
	}
	// Before and after b has served alice, mallory gets what an unknown
	// id gets.
	if resp := b.rawPost(mallory, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another principal on b before its owner: %d, want 404", resp.StatusCode)
	}
	resp = b.rawPost(alice, session, callBody("whoami", "{}"))
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusOK || !strings.Contains(body, "auth0|alice") {
		t.Fatalf("its principal on b: %d %s", resp.StatusCode, body)
	}
	if resp := b.rawPost(mallory, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another principal on b after its owner: %d, want 404", resp.StatusCode)
	}
	if resp := a.rawPost(alice, session, listBody); resp.StatusCode != http.StatusOK {
		t.Errorf("its principal back on a: %d", resp.StatusCode)
	}
	for _, forged := range alteredIDs(session) {
		if resp := b.rawPost(alice, forged, listBody); resp.StatusCode != http.StatusNotFound {
			t.Errorf("an altered id %q on b: %d, want 404", forged, resp.StatusCode)
		}
	}
	if resp := lone.rawPost(alice, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a replica without the fleet's key: %d, want 404", resp.StatusCode)
	}
}

// alteredIDs are the id with one character changed at its start, middle
// and end, and cut short.
func alteredIDs(id string) []string {
	flip := func(i int) string {
		c := byte('A')
		if id[i] == 'A' {
			c = 'B'
		}
		return id[:i] + string(c) + id[i+1:]
	}
	return []string{flip(len("mcp-session-")), flip(len(id) / 2), flip(len(id) - 1), id[:len(id)-1]}
}

// A DELETE ends the session on the replica that receives it: the fleet's
// key does not let that replica take it back.
func TestADeletedSessionStaysEndedWhereItWasDeleted(t *testing.T) {
	t.Setenv("TOOLGATE_TEST_SESSION_KEY", "a fleet key of at least thirty-two bytes")
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	a := startGate(t, []*idptest.Tenant{tn}, withSessionKey("TOOLGATE_TEST_SESSION_KEY"))
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{a.Config.ResourceURL()}})
	session := a.rawPost(alice, "", initializeBody).Header.Get("Mcp-Session-Id")
	if code := a.deleteSession(alice, session); code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	if resp := a.rawPost(alice, session, listBody); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the deleted session: %d, want 404", resp.StatusCode)
	}
}

// Every decision log line names the replica that decided.
func TestDecisionLogNamesTheReplica(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withReplica("replica-7"))
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{g.Config.ResourceURL()}})
	c := g.connect(alice)
	toolNames(t, c)
	if _, err := callTool(c, "whoami", nil); err != nil {
		t.Fatal(err)
	}
	lines := g.decisionLines()
	if len(lines) < 2 {
		t.Fatalf("%d decision lines, want a list and a call", len(lines))
	}
	for _, l := range lines {
		if l["replica"] != "replica-7" {
			t.Errorf("%v %v: replica %v, want replica-7", l["action"], l["tool"], l["replica"])
		}
	}
}
