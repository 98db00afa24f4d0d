package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

func TestSessionsPerPrincipalAreBounded(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) { c.Limits.MaxSessionsPerPrincipal = 3 })
	aud := []string{g.Config.ResourceURL()}
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: aud})
	ids := openSessions(t, g, alice, 3)
	resp := g.rawPost(alice, "", initializeBody)
	body := readAll(t, resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "too_many_sessions") || !strings.Contains(body, "3 open sessions") {
		t.Errorf("a fourth session: %d %s, want 429 naming the limit", resp.StatusCode, body)
	}
	// A GET stream without a session id would open one too.
	req := newMCPRequest(http.MethodGet, g.URL, alice, "", "")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a GET opening a fourth session: %v %v", resp.StatusCode, err)
	}
	// An initialize opens a session whatever id it carries, its own included.
	if resp := g.rawPost(alice, ids[0], initializeBody); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a fourth session by an initialize with an id: %d, want 429", resp.StatusCode)
	}
	// Another principal is not affected; closing one frees a place.
	if resp := g.rawPost(tn.Token(idptest.Claims{Sub: "auth0|bob", Audience: aud}), "", initializeBody); resp.StatusCode != http.StatusOK {
		t.Errorf("bob: %d", resp.StatusCode)
	}
	closeSessions(t, g, alice, ids[:1])
	if resp := g.rawPost(alice, "", initializeBody); resp.StatusCode != http.StatusOK {
		t.Errorf("after closing one: %d", resp.StatusCode)
	}
}

func TestDeeplyNestedJSONIsRefused(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	if resp := g.rawPost(tok, "", callBody("add", `{"a":1,"b":`+deep+`}`)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("65 levels: %d, want 400", resp.StatusCode)
	}
	// Brackets inside strings do not count.
	s := `"` + strings.Repeat("[", 100) + `\"` + `"`
	c := g.connect(tok)
	res, err := callTool(c, "add", map[string]any{"a": 1, "b": 2, "note": s})
	if err != nil || text(res) != "3" {
		t.Errorf("brackets in a string: %v %v", text(res), err)
	}
}

// A GET stream without a session id holds one of the principal's places
// while it is open, and gives it back when it ends.
func TestSessionlessStreamHoldsAPlaceWhileOpen(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) { c.Limits.MaxSessionsPerPrincipal = 2 })
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{g.Config.ResourceURL()}})
	openSessions(t, g, alice, 1)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := http.DefaultClient.Do(newMCPRequest(http.MethodGet, g.URL, alice, "", "").WithContext(ctx))
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %v %v", stream, err)
	}
	if resp := g.rawPost(alice, "", initializeBody); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("with a session and a stream open: %d, want 429", resp.StatusCode)
	}
	cancel()
	stream.Body.Close()
	waitFor(t, "the stream's place back", func() bool {
		resp := g.rawPost(alice, "", initializeBody)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
