package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// gatewayData is the default policy's data with rules for the upstream
// "up": echo for everyone, session for the permission "upstream", slow
// only with the scope slow:run; env has no rule, so it is never visible.
const gatewayData = `{
  "tool_rules": {
    "add": {}, "whoami": {},
    "image_generation": {"any_of": {"permissions": ["image_generation"]}, "call_scopes": ["images:write"]},
    "up_echo": {},
    "up_session": {"any_of": {"permissions": ["upstream"]}},
    "up_slow": {"call_scopes": ["slow:run"]}
  }
}`

// withUpstreamServer puts the upstream at url behind the gate as "up",
// leaving the policy as it is (no rule makes its tools visible).
func withUpstreamServer(url string) gateOption {
	return func(c *config.Config, _ *server.Options) {
		c.Upstreams = []config.Upstream{{Name: "up", URL: url, Timeout: 5 * time.Second}}
	}
}

// withUpstream puts the upstream at url behind the gate as "up", and the
// policy data gatewayData in force.
func withUpstream(url string, builtin bool) gateOption {
	return func(c *config.Config, o *server.Options) {
		withUpstreamServer(url)(c, o)
		c.BuiltinTools = builtin
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(gatewayData), 0o644); err != nil {
			panic(err)
		}
	}
}

// Upstream tools are listed with their prefix and definitions unchanged,
// filtered and decided like built-in tools, and forwarded when allowed,
// without the client's token or session id; a refused call never reaches
// the upstream.
func TestGatewayServesUpstreamToolsBehindThePolicy(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true))
	aud := []string{g.Config.ResourceURL()}
	tok := tn.Token(idptest.Claims{Audience: aud, Scopes: []string{"openid"}})
	c := g.connect(tok)

	if got, want := sorted(toolNames(t, c)), []string{"add", "up_echo", "up_slow", "whoami"}; !slices.Equal(got, want) {
		t.Errorf("tools/list = %v, want %v", got, want)
	}
	// The definition as the upstream wrote it (mcp-go's typed schema would
	// drop oneOf).
	var list struct {
		Result struct {
			Tools []struct {
				Name        string          `json:"name"`
				InputSchema json.RawMessage `json:"inputSchema"`
				Annotations map[string]any  `json:"annotations"`
			} `json:"tools"`
		} `json:"result"`
	}
	resp := g.rawPost(tok, c.GetSessionId(), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, tl := range list.Result.Tools {
		if tl.Name != "up_echo" {
			continue
		}
		var got, want any
		_ = json.Unmarshal(tl.InputSchema, &got)
		_ = json.Unmarshal([]byte(upstreamtest.EchoSchema), &want)
		if !reflect.DeepEqual(got, want) || tl.Annotations["readOnlyHint"] != true {
			t.Errorf("up_echo as listed: schema %s, annotations %v", tl.InputSchema, tl.Annotations)
		}
	}

	res, err := callTool(c, "up_echo", map[string]any{"text": "hello"})
	if err != nil || res.IsError || text(res) != "hello" {
		t.Fatalf("up_echo = %+v, %v", res, err)
	}
	if m, _ := res.StructuredContent.(map[string]any); m["echoed"] != "hello" {
		t.Errorf("structuredContent = %v", res.StructuredContent)
	}

	// Hidden: the same error as a tool that does not exist.
	_, hiddenErr := callTool(c, "up_session", nil)
	_, missingErr := callTool(c, "up_nothing", nil)
	if hiddenErr == nil || strings.ReplaceAll(hiddenErr.Error(), "up_session", "X") != strings.ReplaceAll(missingErr.Error(), "up_nothing", "X") {
		t.Errorf("hidden upstream tool: %v; missing: %v", hiddenErr, missingErr)
	}
	// Step-up: 403 before anything is forwarded.
	resp = g.rawPost(tok, c.GetSessionId(), callBody("up_slow", `{}`))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="slow:run"`) {
		t.Errorf("up_slow without its scope: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if n, m := up.Calls("session"), up.Calls("slow"); n != 0 || m != 0 {
		t.Errorf("refused calls reached the upstream: session %d, slow %d", n, m)
	}
	if up.Calls("echo") != 1 {
		t.Errorf("echo calls = %d, want 1", up.Calls("echo"))
	}
	for _, r := range up.Requests() {
		if r.Header.Get("Authorization") != "" || strings.Contains(strings.Join(r.Header.Values("Mcp-Session-Id"), ","), c.GetSessionId()) {
			t.Errorf("%s reached the upstream with the client's credentials: %v", r.Method, r.Header)
		}
	}

	// A principal with the permission sees and calls up_session.
	c2 := g.connect(tn.Token(idptest.Claims{Sub: "editor", Audience: aud, Permissions: []string{"upstream"}}))
	if res, err := callTool(c2, "up_session", nil); err != nil || res.IsError || text(res) == "" {
		t.Errorf("up_session with the permission = %+v, %v", res, err)
	}
	if _, body := g.readyz(); !strings.Contains(mustJSON(t, body["upstreams"]), `"name":"up","tools":6,"up":true`) {
		t.Errorf("readyz upstreams = %v", body["upstreams"])
	}
	// No upstream's auth is assertion: toolgate publishes no key.
	if resp, err := http.Get(g.URL + "/.well-known/jwks.json"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("jwks.json without an assertion upstream: %v, %v", resp, err)
	}
}

// auth.type assertion: the upstream gets, instead of the client's token, a
// JWT about the calling user that verifies with the key toolgate publishes
// at /.well-known/jwks.json (issue 15).
func TestGatewayAssertionVerifiesWithThePublishedJWKS(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true), func(c *config.Config, _ *server.Options) {
		c.Upstreams[0].Auth = config.UpstreamAuth{Type: "assertion", Audience: "https://up.example"}
	})
	tok := tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"openid"},
		OrgID: "org_1", ClientID: "cli_1"})
	c := g.connect(tok)
	before := len(up.Requests())
	if res, err := callTool(c, "up_echo", map[string]any{"text": "hi"}); err != nil || res.IsError {
		t.Fatalf("up_echo = %+v, %v", res, err)
	}

	resp, err := http.Get(g.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" || strings.Contains(string(body), `"d"`) {
		t.Fatalf("jwks.json: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	kf, err := keyfunc.NewJWKSetJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	for _, r := range up.Requests()[before:] {
		if r.Method != "tools/call" {
			continue
		}
		calls++
		jwtStr, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || jwtStr == tok {
			t.Fatalf("tools/call Authorization = %q", r.Header.Get("Authorization"))
		}
		claims := jwt.MapClaims{}
		if _, err := jwt.ParseWithClaims(jwtStr, claims, kf.Keyfunc, jwt.WithValidMethods([]string{"ES256"}),
			jwt.WithIssuer(g.URL), jwt.WithAudience("https://up.example"), jwt.WithExpirationRequired()); err != nil {
			t.Fatalf("the assertion does not verify with the published key: %v", err)
		}
		if claims["sub"] != "alice" || claims["org_id"] != "org_1" || claims["client_id"] != "cli_1" || claims["scope"] != "openid" {
			t.Errorf("assertion claims = %v", claims)
		}
	}
	if calls != 1 {
		t.Errorf("tools/call requests upstream = %d, want 1", calls)
	}
}

// An upstream that dies loses its tools from the list; the gate and its
// built-in tools go on, and /readyz names it without turning not-ready.
func TestGatewayDeadUpstreamsToolsVanish(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true))
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"openid"}}))
	up.Close()
	res, err := callTool(c, "up_echo", map[string]any{"text": "x"})
	if err != nil || !res.IsError || !strings.Contains(text(res), "upstream up is unavailable") {
		t.Errorf("a call to the dead upstream = %+v, %v", res, err)
	}
	// The failed call makes the gate list the upstream again, which fails.
	deadline := time.Now().Add(10 * time.Second)
	for slices.Contains(toolNames(t, c), "up_echo") {
		if time.Now().After(deadline) {
			t.Fatal("the dead upstream's tools are still listed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "whoami"}) {
		t.Errorf("tools/list = %v", got)
	}
	if res, err := callTool(c, "add", map[string]any{"a": 1, "b": 2}); err != nil || text(res) != "3" {
		t.Errorf("add = %+v, %v", res, err)
	}
	status, body := g.readyz()
	if status != http.StatusOK || !strings.Contains(mustJSON(t, body["upstreams"]), `"name":"up","tools":0,"up":false`) {
		t.Errorf("readyz = %d %v", status, body["upstreams"])
	}
}

// builtin_tools: false is a pure gateway: only upstream tools.
func TestGatewayWithoutBuiltinTools(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, false))
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"openid"}}))
	if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"up_echo", "up_slow"}) {
		t.Errorf("tools/list = %v, want [up_echo up_slow]", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Upstream tools are counted and logged under their names and server, and
// the upstream's requests, state and processes are in the metrics.
func TestGatewayObservability(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true))
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"openid"}}))
	toolNames(t, c)
	if res, err := callTool(c, "up_echo", map[string]any{"text": "hi"}); err != nil || res.IsError {
		t.Fatalf("up_echo = %+v, %v", res, err)
	}
	callTool(c, "add", map[string]any{"a": 1, "b": 2})

	text := g.scrape(g.URL + "/metrics")
	for _, want := range []string{
		`toolgate_upstream_up{upstream="up"} 1`,
		`toolgate_upstream_processes{upstream="up"} 0`,
		`toolgate_upstream_requests_total{method="tools/call",outcome="success",upstream="up"} 1`,
		`toolgate_upstream_requests_total{method="initialize",outcome="success",upstream="up"} `,
		`toolgate_upstream_requests_total{method="tools/call",outcome="timeout",upstream="up"} 0`,
		`toolgate_upstream_request_duration_seconds_count{upstream="up"} `,
		`toolgate_tool_calls_total{outcome="success",tool="up_echo"} 1`,
		`toolgate_tool_calls_total{outcome="error",tool="up_slow"} 0`,
		`toolgate_policy_decisions_total{action="tools/call",reason="allowed",result="allow",tool="up_echo"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, `tool="unknown"`) && strings.Contains(text, `toolgate_tool_calls_total{outcome="success",tool="unknown"} 1`) {
		t.Error("the upstream call counted under tool=unknown")
	}

	servers := map[string]any{}
	var visible []any
	for _, line := range g.decisionLines() {
		switch line["action"] {
		case "tools/call":
			servers[str(line["tool"])] = line["server"]
		case "tools/list":
			visible, _ = line["visible_tools"].([]any)
		}
	}
	if servers["up_echo"] != "up" || servers["add"] != "builtin" {
		t.Errorf("decision log servers = %v, want up_echo: up, add: builtin", servers)
	}
	if !slices.Contains(visible, any("up_echo")) {
		t.Errorf("tools/list line's visible_tools = %v, want up_echo among them", visible)
	}
}

// A tool that leaves the catalog leaves the metrics: an upstream that
// renames its tools cannot grow the scrape without bound.
func TestGatewayDeadUpstreamsToolsLeaveTheMetrics(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true))
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"openid"}}))
	if text := g.scrape(g.URL + "/metrics"); !strings.Contains(text, `tool="up_echo"`) {
		t.Fatal("up_echo has no series while served")
	}
	up.Close()
	callTool(c, "up_echo", map[string]any{"text": "x"}) // makes the gate list again
	waitFor(t, "the upstream down", func() bool {
		return strings.Contains(g.scrape(g.URL+"/metrics"), `toolgate_upstream_up{upstream="up"} 0`)
	})
	waitFor(t, "up_echo's series gone", func() bool {
		return !strings.Contains(g.scrape(g.URL+"/metrics"), `tool="up_echo"`)
	})
	if text := g.scrape(g.URL + "/metrics"); !strings.Contains(text, `tool="add"`) {
		t.Error("a built-in tool's series went with the upstream's")
	}
}

// An upstream with auth.type assertion that fetches toolgate's key when it
// first meets an assertion (as docs/configuration.md tells upstreams to)
// can: toolgate serves /.well-known/jwks.json while it lists its upstreams
// for the first time, and is not ready until that listing has ended.
func TestGatewayAssertionUpstreamFetchesTheKeyAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jwks := "http://" + ln.Addr().String() + "/.well-known/jwks.json"
	up := upstreamtest.Start(t)
	target, _ := url.Parse(up.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	fetch := &http.Client{Timeout: 2 * time.Second}
	verifying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := fetch.Get(jwks)
		if err != nil {
			http.Error(w, "no key: "+err.Error(), http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		kf, err := keyfunc.NewJWKSetJSON(body)
		assertion, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if err == nil {
			_, err = jwt.Parse(assertion, kf.Keyfunc, jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience("https://up.example"))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(verifying.Close)

	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGateOn(t, ln, []*idptest.Tenant{tn}, withUpstream(verifying.URL+"/mcp", true), func(c *config.Config, _ *server.Options) {
		c.Upstreams[0].Auth = config.UpstreamAuth{Type: "assertion", Audience: "https://up.example"}
	})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}, Scopes: []string{"openid"}}))
	if got := toolNames(t, c); !slices.Contains(got, "up_echo") {
		t.Fatalf("tools/list once ready = %v, want up_echo among them", got)
	}
}

// Token-less clients are one principal to the policy, but the gate tells
// them apart by address: with sessions: per_principal each address gets an
// upstream session of its own, so one anonymous client's stateful upstream
// never serves another.
func TestGatewayAnonymousClientsGetUpstreamSessionsOfTheirOwn(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withAnonymous(), withUpstreamServer(up.URL), func(c *config.Config, _ *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(`{"tool_rules": {"up_session": {"anonymous": true}}}`), 0o644); err != nil {
			panic(err)
		}
	})
	upstreamSession := func(c *http.Client) string {
		t.Helper()
		post := func(session, body string) *http.Response {
			req := newMCPRequest(http.MethodPost, g.URL, "", session, body)
			req.Header.Del("Authorization")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		resp := post("", initializeBody)
		resp.Body.Close()
		session := resp.Header.Get("Mcp-Session-Id")
		resp = post(session, callBody("up_session", `{}`))
		defer resp.Body.Close()
		var msg struct {
			Result struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil || len(msg.Result.Content) != 1 || msg.Result.Content[0].Text == "" {
			t.Fatalf("up_session: %d %+v %v", resp.StatusCode, msg, err)
		}
		return msg.Result.Content[0].Text
	}
	one, two := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	first := upstreamSession(one)
	if again := upstreamSession(one); again != first {
		t.Errorf("one address, two calls: upstream sessions %q and %q, want one", first, again)
	}
	if other := upstreamSession(two); other == first {
		t.Errorf("two anonymous addresses share the upstream session %q", first)
	}
}

// Until the first listing of every upstream has ended, /readyz is 503 and
// names the upstreams pending, so that a load balancer sends no client to
// a catalog without their tools; once it has ended, ready.
func TestGatewayNotReadyUntilTheFirstListingEnds(t *testing.T) {
	up := upstreamtest.Start(t)
	release := make(chan struct{})
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		http.Redirect(w, r, up.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(held.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGateNotReady(t, []*idptest.Tenant{tn}, withUpstream(held.URL+"/mcp", true))
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := g.readyz()
		if code == http.StatusServiceUnavailable && fmt.Sprint(body["upstreams_pending"]) == "[up]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz while the first listing is held: %d %v", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release) // the held request fails (toolgate follows no redirect): the upstream is down, and tried
	g.waitReady()
	if code, body := g.readyz(); code != http.StatusOK || body["upstreams_pending"] != nil {
		t.Errorf("readyz after the first listing: %d %v", code, body)
	}
}
