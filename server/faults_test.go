package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

func issuerStatus(t *testing.T, g *gate, name string) map[string]any {
	t.Helper()
	_, body := g.readyz()
	list, _ := body["issuers"].([]any)
	for _, x := range list {
		if m, ok := x.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("readyz names no issuer %q: %v", name, body)
	return nil
}

// Once its keys are cached, toolgate keeps serving through any identity
// provider fault, and says what is wrong on /readyz and in a metric.
func TestIdentityProviderFaultsKeepCachedKeysServing(t *testing.T) {
	for _, outage := range []idptest.Outage{idptest.OutageDown, idptest.OutageGarbage, idptest.OutageEmpty, idptest.OutageOversized, idptest.OutageHang} {
		t.Run(outage.String(), func(t *testing.T) {
			tn := idptest.NewTenant(t, idptest.ProviderAuth0)
			g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) { c.Tokens.JWKSTimeout = 300 * time.Millisecond })
			aud := []string{g.Config.ResourceURL()}
			good := tn.Token(idptest.Claims{Sub: "auth0|ok", Audience: aud})
			tn.SetOutage(outage)
			// An unknown kid makes toolgate refetch the JWKS, into the fault.
			unknown := tn.Sign(map[string]any{"kid": "rotated-away"}, map[string]any{
				"iss": tn.Issuer(), "sub": "auth0|x", "aud": aud[0], "exp": time.Now().Add(time.Hour).Unix(),
			})
			if resp := g.rawPost(unknown, "", initializeBody); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("unknown kid during the fault: %d, want 401", resp.StatusCode)
			}
			start := time.Now()
			if resp := g.rawPost(good, "", initializeBody); resp.StatusCode != http.StatusOK {
				t.Errorf("a token of a cached key during the fault: %d, want 200", resp.StatusCode)
			}
			if d := time.Since(start); d > 250*time.Millisecond {
				t.Errorf("a token of a cached key waited %s for the faulty provider", d)
			}
			waitFor(t, "the failed fetch on /readyz", func() bool {
				return issuerStatus(t, g, "auth0")["last_fetch_error"] != nil
			})
			if status, _ := g.readyz(); status != http.StatusOK {
				t.Errorf("readyz %d: keys were fetched once, so toolgate stays ready", status)
			}
			if !strings.Contains(g.scrape(g.URL+"/metrics"), `toolgate_jwks_refreshes_total{issuer="auth0",result="failure"}`) {
				t.Error("the failed fetch is not counted")
			}
		})
	}
}

// failingWriter fails while broken is set.
type failingWriter struct{ broken atomic.Bool }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.broken.Load() {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// An unwritable decision log does not change a decision: denials stay
// denials, and the failure shows on /readyz, in the log and in a metric.
func TestUnwritableDecisionLogNeverFailsOpen(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	w := &failingWriter{}
	g := startGate(t, []*idptest.Tenant{tn}, withOptions(func(o *server.Options) { o.DecisionLog = w }))
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	w.broken.Store(true)
	if _, err := callTool(c, "image_generation", map[string]any{"prompt": "x"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a hidden tool while the log is broken: %v", err)
	}
	if res, err := callTool(c, "add", map[string]any{"a": 1, "b": 1}); err != nil || text(res) != "2" {
		t.Errorf("an allowed call while the log is broken: %v %v", text(res), err)
	}
	if _, body := g.readyz(); !strings.Contains(str(body["decision_log_error"]), "disk full") {
		t.Errorf("readyz = %v", body)
	}
	if !strings.Contains(g.scrape(g.URL+"/metrics"), "toolgate_decision_log_write_failures_total 2") {
		t.Errorf("failures not counted:\n%s", grep(g.scrape(g.URL+"/metrics"), "toolgate_decision_log"))
	}
	if !strings.Contains(logOf(t), "decision log write failed") {
		t.Error("the failure is not logged")
	}
	w.broken.Store(false)
	callTool(c, "add", map[string]any{"a": 1, "b": 1})
	if _, body := g.readyz(); body["decision_log_error"] != nil {
		t.Errorf("the error stays after the log recovered: %v", body)
	}
}

// A removed policy directory keeps the last good policy serving.
func TestRemovedPolicyDirectoryKeepsServing(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	removeAll(t, g.PolicyDir)
	waitFor(t, "the failed reload", func() bool { _, b := g.readyz(); return b["policy_reload_error"] != nil })
	if got := sorted(toolNames(t, c)); strings.Join(got, ",") != "add,whoami" {
		t.Errorf("tools/list = %v, want the last good policy's answer", got)
	}
}

// Shutdown drains and leaves no goroutine behind, streams included.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	ignore := goleak.IgnoreCurrent()
	g, stop := startStoppableGate(t, []*idptest.Tenant{tn})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}), transport.WithContinuousListening())
	toolNames(t, c)
	callTool(c, "add", map[string]any{"a": 1, "b": 1})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		err := goleak.Find(ignore)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
