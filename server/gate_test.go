package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/tools"
)

var providers = []string{idptest.ProviderAuth0, idptest.ProviderWorkOS, idptest.ProviderStytch}

// imageClaims gives each provider's principal the right to see
// image_generation the way that provider expresses it: Auth0 RBAC
// permissions, a WorkOS role and a Stytch session role, both mapped to the
// permission by the policy's role_permissions.
func imageClaims(provider string, c idptest.Claims) idptest.Claims {
	switch provider {
	case idptest.ProviderAuth0:
		c.Permissions = []string{"image_generation"}
	case idptest.ProviderWorkOS:
		c.Roles = []string{"admin"}
	case idptest.ProviderStytch:
		c.Roles = []string{"image-creator"}
	}
	return c
}

func TestToolsAreFilteredAndEnforcedForEveryProvider(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			tn := idptest.NewTenant(t, provider)
			g := startGate(t, []*idptest.Tenant{tn})
			aud := []string{g.Config.ResourceURL()}

			t.Run("without the permission", func(t *testing.T) {
				c := g.connect(tn.Token(idptest.Claims{Audience: aud, Scopes: []string{"openid", "images:write"}}))
				if got := toolNames(t, c); !slices.Equal(sorted(got), []string{"add", "whoami"}) {
					t.Errorf("tools/list = %v, want exactly [add whoami]", got)
				}
				_, hiddenErr := callTool(c, "image_generation", map[string]any{"prompt": "a cat"})
				_, missingErr := callTool(c, "no_such_tool", map[string]any{})
				if hiddenErr == nil || missingErr == nil {
					t.Fatalf("calls of a hidden and a missing tool must fail: %v, %v", hiddenErr, missingErr)
				}
				if strings.ReplaceAll(hiddenErr.Error(), "image_generation", "X") != strings.ReplaceAll(missingErr.Error(), "no_such_tool", "X") {
					t.Errorf("a hidden tool's error %q differs from a missing tool's %q", hiddenErr, missingErr)
				}
				res, err := callTool(c, "add", map[string]any{"a": 2, "b": 3})
				if err != nil || res.IsError || text(res) != "5" {
					t.Errorf("add = %v, %v", text(res), err)
				}
			})

			t.Run("with the permission and the scope", func(t *testing.T) {
				c := g.connect(tn.Token(imageClaims(provider, idptest.Claims{Audience: aud, Scopes: []string{"images:write"}})))
				if got := toolNames(t, c); !slices.Equal(sorted(got), []string{"add", "image_generation", "whoami"}) {
					t.Errorf("tools/list = %v", got)
				}
				res, err := callTool(c, "image_generation", map[string]any{"prompt": "a lighthouse at dusk"})
				if err != nil || res.IsError {
					t.Fatalf("image_generation: %v %v", err, res)
				}
				assertPNG(t, res)
			})

			t.Run("without the scope: step-up 403", func(t *testing.T) {
				tok := tn.Token(imageClaims(provider, idptest.Claims{Audience: aud, Scopes: []string{"openid"}}))
				c := g.connect(tok)
				_, err := callTool(c, "image_generation", map[string]any{"prompt": "x"})
				if err == nil || !strings.Contains(err.Error(), "insufficient_scope") {
					t.Errorf("want the client to see insufficient_scope, got %v", err)
				}
				resp := g.rawPost(tok, c.GetSessionId(), callBody("image_generation", `{"prompt":"x"}`))
				want := `Bearer error="insufficient_scope", scope="images:write", resource_metadata="` + g.URL + `/.well-known/oauth-protected-resource/mcp"`
				if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != want {
					t.Errorf("got %d %q, want 403 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
				}
			})

			t.Run("whoami is the normalised principal", func(t *testing.T) {
				c := g.connect(tn.Token(idptest.Claims{Sub: "subject-1", Audience: aud, OrgID: "org_1", ClientID: "client-1", Scopes: []string{"openid"}}))
				res, err := callTool(c, "whoami", nil)
				if err != nil || res.IsError {
					t.Fatalf("whoami: %v %v", err, res)
				}
				var p map[string]any
				if err := json.Unmarshal([]byte(text(res)), &p); err != nil {
					t.Fatal(err)
				}
				if p["sub"] != "subject-1" || p["provider"] != provider || p["org_id"] != "org_1" || p["client_id"] != "client-1" || p["iss"] != tn.Issuer() {
					t.Errorf("whoami = %v", p)
				}
				if _, ok := p["claims"].(map[string]any); !ok {
					t.Errorf("whoami has no claims: %v", p)
				}
			})
		})
	}
}

func TestDenialWithoutScopesIsPermissionDenied(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	c := g.connect(tn.Token(imageClaims(tn.Provider(), idptest.Claims{Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"images:write"}})))
	res, err := callTool(c, "image_generation", map[string]any{"prompt": strings.Repeat("x", 1001)})
	if err != nil {
		t.Fatal(err)
	}
	want := `Permission denied: argument "prompt" is longer than 1000 characters`
	if !res.IsError || text(res) != want {
		t.Errorf("got isError=%v %q, want %q", res.IsError, text(res), want)
	}
	if res.Meta == nil || res.Meta.AdditionalFields["decision_id"] == "" {
		t.Errorf("the denial carries no decision id: %+v", res.Meta)
	}
}

// A tool that panics fails its call, counted as an error, and the gate
// goes on serving.
func TestToolPanicIsTheCallsError(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, o *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(`{"tool_rules": {"boom": {}, "add": {}}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		o.Tools = append(tools.Builtin(), mcpserver.ServerTool{
			Tool:    mcp.NewTool("boom", mcp.WithDescription("panics")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { panic("kaboom") },
		})
	})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	if res, err := callTool(c, "boom", nil); err == nil || !strings.Contains(err.Error(), "panic recovered in boom tool handler: kaboom") {
		t.Errorf("boom: %v %v, want the panic as the call's error", text(res), err)
	}
	if res, err := callTool(c, "add", map[string]any{"a": 1, "b": 2}); err != nil || text(res) != "3" {
		t.Errorf("add after the panic: %v %v", text(res), err)
	}
	if m := g.scrape(g.URL + "/metrics"); !strings.Contains(m, `toolgate_tool_calls_total{outcome="error",tool="boom"} 1`) {
		t.Errorf("the panic is not counted as an error:\n%s", grep(m, "toolgate_tool_calls_total"))
	}
}

func TestPolicyEditChangesToolsListWithoutRestart(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}), transport.WithContinuousListening())
	notified := notifications(c, mcp.MethodNotificationToolsListChanged)
	if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "whoami"}) {
		t.Fatalf("before: %v", got)
	}
	before := g.srv.Policy().Revision()
	g.writePolicyFile("data.json", `{"tool_rules": {"whoami": {}}, "role_permissions": {}}`)
	waitFor(t, "the new policy", func() bool { return g.srv.Policy().Revision() != before })
	if got := toolNames(t, c); !slices.Equal(got, []string{"whoami"}) {
		t.Errorf("after the edit: %v, want [whoami]", got)
	}
	waitFor(t, "notifications/tools/list_changed", func() bool { return notified.Load() > 0 })
	if res, err := callTool(c, "add", map[string]any{"a": 1, "b": 1}); err == nil {
		t.Errorf("add is hidden now but was called: %v", text(res))
	}
}

func TestBrokenPolicyKeepsTheLastGoodOne(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	before := g.srv.Policy().Revision()
	g.writePolicyFile("broken.rego", "package mcp.authz\n\nvisible_tools := {\"add\" \n")
	waitFor(t, "the reload to fail", func() bool {
		_, body := g.readyz()
		return body["policy_reload_error"] != nil
	})
	status, body := g.readyz()
	if status != http.StatusOK || !strings.Contains(body["policy_reload_error"].(string), "broken.rego:") {
		t.Errorf("readyz = %d %v, want 200 naming broken.rego and its line", status, body)
	}
	if g.srv.Policy().Revision() != before {
		t.Error("the broken policy was swapped in")
	}
	if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "whoami"}) {
		t.Errorf("tools/list = %v, want the last good policy's answer", got)
	}
	// Mending it loads it again and clears the error.
	g.writePolicyFile("broken.rego", "package mcp.authz\n")
	waitFor(t, "the mended policy", func() bool {
		_, body := g.readyz()
		return body["policy_reload_error"] == nil
	})
}

func TestSessionIsBoundToItsPrincipal(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	aud := []string{g.Config.ResourceURL()}
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: aud})
	mallory := tn.Token(idptest.Claims{Sub: "auth0|mallory", Audience: aud})
	c := g.connect(alice)
	session := c.GetSessionId()
	if session == "" {
		t.Fatal("no session id")
	}
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(method, g.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
		req.Header.Set("Authorization", "Bearer "+mallory)
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s with another principal's session: %d, want 404", method, resp.StatusCode)
		}
	}
	// The owner still has it; an unknown id is 404 too.
	if got := toolNames(t, c); len(got) == 0 {
		t.Error("the owner lost the session")
	}
	if resp := g.rawPost(alice, "mcp-session-00000000-0000-0000-0000-000000000000", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown session: %d, want 404", resp.StatusCode)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	auth0 := idptest.NewTenant(t, idptest.ProviderAuth0)
	workos := idptest.NewTenant(t, idptest.ProviderWorkOS)
	g := startGate(t, []*idptest.Tenant{auth0, workos}, withScopes("images:write"))
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(g.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
			ScopesSupported      []string `json:"scopes_supported"`
			BearerMethods        []string `json:"bearer_methods_supported"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		if doc.Resource != g.URL+"/mcp" ||
			!slices.Equal(doc.AuthorizationServers, []string{auth0.Issuer(), workos.Issuer()}) ||
			!slices.Equal(doc.ScopesSupported, []string{"images:write"}) ||
			!slices.Equal(doc.BearerMethods, []string{"header"}) {
			t.Errorf("%s = %+v", path, doc)
		}
	}
}

func TestAnonymousPrincipalIsDecidedByPolicy(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withAnonymous())
	c := g.connect("")
	if got := toolNames(t, c); len(got) != 0 {
		t.Errorf("the default policy shows the anonymous principal %v", got)
	}
	g.writePolicyFile("data.json", `{"tool_rules": {"add": {"anonymous": true}, "whoami": {}}}`)
	waitFor(t, "add for the anonymous principal", func() bool { return slices.Equal(toolNames(t, c), []string{"add"}) })
	// A bad token is still refused: anonymous access is for requests without one.
	if resp := g.rawPost("not.a.token", "", initializeBody); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad token with anonymous on: %d, want 401", resp.StatusCode)
	}
}

func TestReadinessWaitsForIssuerKeys(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderWorkOS)
	tn.SetOutage(idptest.OutageDown)
	g := startGateNotReady(t, []*idptest.Tenant{tn})
	status, body := g.readyz()
	if status != http.StatusServiceUnavailable || !strings.Contains(strings.Join(anyStrings(body["issuers_without_keys"]), ","), "workos") {
		t.Errorf("readyz = %d %v, want 503 naming the issuer", status, body)
	}
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	if resp := g.rawPost(tok, "", initializeBody); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a token whose issuer has no keys yet: %d, want 503", resp.StatusCode)
	}
	tn.SetOutage(idptest.OutageNone)
	g.waitReady()
	if resp := g.rawPost(tok, "", initializeBody); resp.StatusCode != http.StatusOK {
		t.Errorf("after the keys arrived: %d", resp.StatusCode)
	}
}

func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	started := make(chan struct{})
	release := make(chan struct{})
	g, stop := startStoppableGate(t, []*idptest.Tenant{tn}, slowTool(started, release))
	g.writePolicyFile("data.json", `{"tool_rules": {"slow": {}}}`)
	waitFor(t, "the slow tool's policy", func() bool {
		_, b := g.readyz()
		return b["policy_reload_error"] == nil && g.srv.Policy().Revision() != ""
	})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	waitFor(t, "slow to be visible", func() bool { return slices.Contains(toolNames(t, c), "slow") })
	result := make(chan string, 1)
	go func() {
		res, err := callTool(c, "slow", nil)
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		result <- text(res)
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(100 * time.Millisecond) // shutdown is under way
	close(release)
	if got := <-result; got != "done" {
		t.Errorf("in-flight call: %q, want done", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Get(g.URL + "/healthz"); err == nil {
		t.Error("the server still accepts connections after shutdown")
	}
}

func TestRequestBodyIsBounded(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	big := callBody("add", `{"a":1,"b":2,"pad":"`+strings.Repeat("x", 1<<20)+`"}`)
	if resp := g.rawPost(tok, "", big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over 1 MiB: %d, want 413", resp.StatusCode)
	}
	// Without a Content-Length (chunked), the limit holds as the body is read.
	chunked := func(body string) *http.Response {
		req := newMCPRequest(http.MethodPost, g.URL, tok, "", "")
		req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := chunked(big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked body over 1 MiB: %d, want 413", resp.StatusCode)
	}
	if resp := chunked(initializeBody); resp.StatusCode != http.StatusOK {
		t.Errorf("a chunked initialize: %d, want 200", resp.StatusCode)
	}
}

func text(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func assertPNG(t *testing.T, res *mcp.CallToolResult) {
	t.Helper()
	for _, c := range res.Content {
		if ic, ok := c.(mcp.ImageContent); ok {
			if ic.MIMEType != "image/png" {
				t.Errorf("mime type %q", ic.MIMEType)
			}
			b, err := base64.StdEncoding.DecodeString(ic.Data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Errorf("not a PNG: %v", err)
			}
			return
		}
	}
	t.Errorf("no image content in %+v", res.Content)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func anyStrings(v any) []string {
	var out []string
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
