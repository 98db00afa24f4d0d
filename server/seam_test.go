package server_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/rego"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/tools"
)

// stubAuth is an Authenticator with no identity provider behind it: a
// token is the principal it names, or refused.
type stubAuth map[string]*idp.Principal

func (s stubAuth) Verify(_ context.Context, token string) (*idp.Principal, error) {
	if p, ok := s[token]; ok {
		return p, nil
	}
	return nil, &idp.Error{Reason: idp.ReasonSignatureInvalid}
}

func (stubAuth) Status() []idp.IssuerStatus { return nil }

// The gate runs on its parts alone: a stub authenticator, no issuer and no
// key fetched, and the default policy, which filters tools/list by the
// stub's principals; a token the stub refuses is a 401.
func TestGateRunsOnAStubAuthenticator(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Anonymous = true // only to pass validation without an issuer
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Anonymous = false
	cfg.DecisionLog.FlushInterval = 0
	catalog := tools.Builtin()
	engine, err := policy.New(policy.Source{FS: rego.FS}, server.Catalog(catalog), policy.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	auth := stubAuth{
		"painter": {Sub: "painter", Provider: "oidc", Permissions: []string{"image_generation"}},
		"guest":   {Sub: "guest", Provider: "oidc", Permissions: []string{}},
	}
	decisions := &logBuffer{}
	srv, err := server.New(server.Options{Config: cfg, Logger: testLogger(t), Authenticator: auth, Decider: engine, Tools: catalog, DecisionLog: decisions})
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, URL: cfg.PublicURL, Config: cfg, srv: srv, decisions: decisions}
	g.serve(ln)
	g.waitReady()

	for token, want := range map[string][]string{
		"painter": {"add", "image_generation", "whoami"},
		"guest":   {"add", "whoami"},
	} {
		got := toolNames(t, g.connect(token))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("tools/list for %s: %v, want %v", token, got, want)
		}
	}
	res, err := callTool(g.connect("guest"), "whoami", nil)
	if err != nil || res.IsError || !strings.Contains(text(res), `"sub":"guest"`) {
		t.Errorf("whoami for guest: %+v %v", res, err)
	}

	resp := g.rawPost("forged", "", initializeBody)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a token the stub refuses: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}
