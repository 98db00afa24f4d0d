package server_test

import (
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
