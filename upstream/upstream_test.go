package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// A test binary started with UPSTREAMTEST_STDIO=1 is a stdio upstream.
func TestMain(m *testing.M) { upstreamtest.Main(m) }

// upstreamConfig is a validated configuration of one upstream.
func upstreamConfig(t *testing.T, yaml string) config.Upstream {
	t.Helper()
	c, err := config.Parse([]byte("anonymous: true\nupstreams:\n  - " + strings.ReplaceAll(strings.TrimSpace(yaml), "\n", "\n    ") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return c.Upstreams[0]
}

// startPool starts a pool of cfgs until the test ends.
func startPool(t *testing.T, o Options, cfgs ...config.Upstream) *Pool {
	t.Helper()
	p, err := New(cfgs, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := p.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wait() })
	<-p.Listed()
	return p
}

func toolNamed(t *testing.T, p *Pool, name string) Tool {
	t.Helper()
	for _, tl := range p.Tools() {
		if tl.Tool.Name == name {
			return tl
		}
	}
	t.Fatalf("no tool %s among %v", name, names(p.Tools()))
	return Tool{}
}

func names(ts []Tool) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Tool.Name)
	}
	slices.Sort(out)
	return out
}

func asPrincipal(sub string) context.Context {
	return idp.WithPrincipal(context.Background(), &idp.Principal{Iss: "https://issuer.example", Sub: sub})
}

// call calls tool as the principal sub, with a request that carries what a
// client's does: its token and session id.
func call(t *testing.T, tl Tool, sub string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{Header: map[string][]string{"Authorization": {"Bearer client-token"}, "Mcp-Session-Id": {"client-session"}}}
	req.Params.Name, req.Params.Arguments = tl.Tool.Name, args
	res, err := tl.Handler(asPrincipal(sub), req)
	if err != nil {
		t.Fatalf("%s: %v", tl.Tool.Name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestListsToolsPrefixedWithTheirDefinitionsUnchanged(t *testing.T) {
	up := upstreamtest.Start(t,
		json.RawMessage(`{"name":"bad name","inputSchema":{"type":"object"}}`),
		json.RawMessage(`{"name":"echo","description":"a second echo","inputSchema":{"type":"object"}}`),
		json.RawMessage(`{"name":"`+strings.Repeat("x", 129)+`","inputSchema":{"type":"object"}}`),
	)
	p := startPool(t, Options{Reserved: []string{"up_session"}}, upstreamConfig(t, "name: up\nurl: "+up.URL))
	if got, want := names(p.Tools()), []string{"up_big", "up_echo", "up_env", "up_progress", "up_slow"}; !slices.Equal(got, want) {
		t.Errorf("tools = %v, want %v (bad names, a repeat and a reserved name dropped)", got, want)
	}
	echo := toolNamed(t, p, "up_echo")
	if echo.Server != "up" || echo.Tool.Description != "Echoes text." || echo.Tool.Annotations.Title != "Echo" ||
		echo.Tool.Annotations.ReadOnlyHint == nil || !*echo.Tool.Annotations.ReadOnlyHint {
		t.Errorf("echo = %+v", echo)
	}
	var got, want any
	_ = json.Unmarshal(echo.Tool.RawInputSchema, &got)
	_ = json.Unmarshal([]byte(upstreamtest.EchoSchema), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("input schema = %s, want %s", echo.Tool.RawInputSchema, upstreamtest.EchoSchema)
	}
	if st := p.Status(); len(st) != 1 || !st[0].Up || st[0].Tools != 6 {
		t.Errorf("status = %+v", st)
	}
}

// A call reaches the upstream as a request of toolgate's own: with the
// configured auth header, never the client's token or session id, and the
// result comes back as the upstream made it.
func TestForwardsACallWithoutTheClientsToken(t *testing.T) {
	up := upstreamtest.Start(t)
	cfg := upstreamConfig(t, "name: up\nurl: "+up.URL+"\nauth: {type: header, header_name: X-Api-Key, value_env: UP_KEY}")
	p := startPool(t, Options{Getenv: envMap{"UP_KEY": "k-123"}.get}, cfg)
	res := call(t, toolNamed(t, p, "up_echo"), "alice", map[string]any{"text": "hi"})
	if res.IsError || text(res) != "hi" {
		t.Fatalf("result = %+v", res)
	}
	if m, _ := res.StructuredContent.(map[string]any); m["echoed"] != "hi" {
		t.Errorf("structuredContent = %v", res.StructuredContent)
	}
	if res.Meta == nil || res.Meta.AdditionalFields["upstream"] != "upstreamtest" {
		t.Errorf("_meta = %+v", res.Meta)
	}
	reqs := up.Requests()
	if len(reqs) == 0 {
		t.Fatal("the upstream got nothing")
	}
	for _, r := range reqs {
		if r.Header.Get("X-Api-Key") != "k-123" {
			t.Errorf("%s: X-Api-Key = %q", r.Method, r.Header.Get("X-Api-Key"))
		}
		if r.Header.Get("Authorization") != "" || r.Header.Get("Mcp-Session-Id") == "client-session" {
			t.Errorf("%s: the client's credentials reached the upstream: %v", r.Method, r.Header)
		}
	}
}

func TestRefusesAnUnsetSecret(t *testing.T) {
	_, err := New([]config.Upstream{
		upstreamConfig(t, "name: a\nurl: https://a.example/mcp\nauth: {type: header, header_name: X-Key, value_env: UNSET_KEY}"),
		upstreamConfig(t, "name: b\nurl: https://b.example/mcp\nauth: {type: client_credentials, token_url: https://as.example/token, client_id: tg, client_secret_env: UNSET_SECRET}"),
		upstreamConfig(t, "name: c\nurl: https://c.example/mcp\nauth: {type: assertion, audience: c}"),
	}, Options{Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "UNSET_KEY is not set") || !strings.Contains(err.Error(), "UNSET_SECRET is not set") ||
		strings.Contains(err.Error(), "upstreams[2]") {
		t.Errorf("err = %v", err)
	}
}

// client_credentials: toolgate gets a token for itself at token_url with
// its client id, secret, scopes and audience, reuses it while it is valid,
// and sends it upstream instead of anything of the client's.
func TestClientCredentialsTokenIsFetchedOnceAndSent(t *testing.T) {
	var mu sync.Mutex
	var minted int
	var bad []string
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		_ = r.ParseForm()
		mu.Lock()
		defer mu.Unlock()
		if id != "toolgate" || secret != "s3cret" || r.Form.Get("grant_type") != "client_credentials" ||
			r.Form.Get("audience") != "https://api.example" || r.Form.Get("scope") != "mcp:read mcp:call" {
			bad = append(bad, fmt.Sprintf("id %q secret ok %v form %v", id, secret == "s3cret", r.Form))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		minted++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"minted-%d","token_type":"Bearer","expires_in":3600}`, minted)
	}))
	t.Cleanup(as.Close)
	up := upstreamtest.Start(t)
	cfg := upstreamConfig(t, "name: up\nurl: "+up.URL+"\nauth: {type: client_credentials, token_url: "+as.URL+
		", client_id: toolgate, client_secret_env: UP_SECRET, scopes: [mcp:read, mcp:call], audience: https://api.example}")
	p := startPool(t, Options{Getenv: envMap{"UP_SECRET": "s3cret"}.get}, cfg)
	tl := toolNamed(t, p, "up_echo")
	for _, sub := range []string{"alice", "bob"} {
		if res := call(t, tl, sub, map[string]any{"text": "hi"}); res.IsError {
			t.Fatalf("%s: %+v", sub, res)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if minted != 1 || len(bad) > 0 {
		t.Errorf("tokens minted = %d, want 1; refused token requests: %v", minted, bad)
	}
	reqs := up.Requests()
	if len(reqs) == 0 {
		t.Fatal("the upstream got nothing")
	}
	for _, r := range reqs {
		if got := r.Header.Get("Authorization"); got != "Bearer minted-1" {
			t.Errorf("%s: Authorization = %q, want the minted token", r.Method, got)
		}
	}
}

// assertion: every request carries a JWT signed with the key of the pool's
// JWKS, about the principal of the call (or, for a request of toolgate's
// own, toolgate), for the configured audience, short-lived.
func TestAssertionNamesTheCallingPrincipal(t *testing.T) {
	up := upstreamtest.Start(t)
	for _, sessions := range []string{"per_principal", "shared"} {
		t.Run(sessions, func(t *testing.T) {
			cfg := upstreamConfig(t, "name: up\nurl: "+up.URL+"\nsessions: "+sessions+"\nauth: {type: assertion, audience: https://up.example}")
			p := startPool(t, Options{Issuer: "https://gate.example"}, cfg)
			kf, err := keyfunc.NewJWKSetJSON(p.JWKS())
			if err != nil {
				t.Fatal(err)
			}
			before := len(up.Requests())
			ctx := idp.WithPrincipal(context.Background(), &idp.Principal{Iss: "https://issuer.example", Sub: "alice",
				ClientID: "cli-1", OrgID: "org-9", Scopes: []string{"openid", "mcp:call"}})
			req := mcp.CallToolRequest{Header: map[string][]string{"Authorization": {"Bearer client-token"}}}
			req.Params.Name, req.Params.Arguments = "up_echo", map[string]any{"text": "hi"}
			if res, err := toolNamed(t, p, "up_echo").Handler(ctx, req); err != nil || res.IsError {
				t.Fatalf("up_echo = %+v, %v", res, err)
			}
			var sawCall bool
			for _, r := range up.Requests()[before:] {
				if r.Method == "" {
					continue // the listing session's GET stream, toolgate's own, may (re)open meanwhile
				}
				h := r.Header.Get("Authorization")
				tok, ok := strings.CutPrefix(h, "Bearer ")
				if !ok || strings.Contains(h, "client-token") {
					t.Fatalf("%s: Authorization = %q", r.Method, h)
				}
				c := jwt.MapClaims{}
				if _, err := jwt.ParseWithClaims(tok, c, kf.Keyfunc, jwt.WithValidMethods([]string{"ES256"}),
					jwt.WithIssuer("https://gate.example"), jwt.WithAudience("https://up.example"), jwt.WithExpirationRequired()); err != nil {
					t.Fatalf("%s: the assertion does not verify: %v", r.Method, err)
				}
				exp, _ := c.GetExpirationTime()
				if d := time.Until(exp.Time); d > 5*time.Minute || c["jti"] == "" {
					t.Errorf("%s: exp in %s, jti %v", r.Method, d, c["jti"])
				}
				// per_principal: alice's session is opened for this call,
				// and its initialize names her too.
				sawCall = sawCall || r.Method == "tools/call"
				if c["sub"] != "alice" || c["client_id"] != "cli-1" || c["org_id"] != "org-9" || c["scope"] != "openid mcp:call" {
					t.Errorf("%s: claims = %v", r.Method, c)
				}
			}
			if !sawCall {
				t.Error("no tools/call reached the upstream")
			}
		})
	}
}

// per_principal: each principal its own upstream session; shared: one.
func TestSessionsPerPrincipalOrShared(t *testing.T) {
	up := upstreamtest.Start(t)
	for _, tc := range []struct {
		sessions string
		same     bool
	}{{"per_principal", false}, {"shared", true}} {
		t.Run(tc.sessions, func(t *testing.T) {
			p := startPool(t, Options{}, upstreamConfig(t, "name: up\nurl: "+up.URL+"\nsessions: "+tc.sessions))
			tl := toolNamed(t, p, "up_session")
			alice1, bob, alice2 := text(call(t, tl, "alice", nil)), text(call(t, tl, "bob", nil)), text(call(t, tl, "alice", nil))
			if alice1 == "" || alice1 != alice2 {
				t.Errorf("alice's sessions: %q then %q, want one", alice1, alice2)
			}
			if (alice1 == bob) != tc.same {
				t.Errorf("alice %q, bob %q: same = %v, want %v", alice1, bob, alice1 == bob, tc.same)
			}
		})
	}
}

// An upstream that goes down loses its tools: a call to it answers an
// error at once, and makes the pool list its tools again, which withdraws
// them.
func TestADeadUpstreamLosesItsTools(t *testing.T) {
	up := upstreamtest.Start(t)
	changed := make(chan struct{}, 8)
	p := startPool(t, Options{OnChange: func() { changed <- struct{}{} }}, upstreamConfig(t, "name: up\nurl: "+up.URL))
	<-changed // the first listing
	echo := toolNamed(t, p, "up_echo")
	up.Close()
	if res := call(t, echo, "alice", map[string]any{"text": "x"}); !res.IsError || !strings.Contains(text(res), "upstream up is unavailable") {
		t.Errorf("call to a dead upstream = %+v", res)
	}
	<-changed
	if ts := p.Tools(); len(ts) != 0 {
		t.Errorf("tools of a dead upstream: %v", names(ts))
	}
	if st := p.Status(); st[0].Up || st[0].Error == "" {
		t.Errorf("status = %+v", st)
	}
}

// A stdio upstream's process gets its env and PATH and HOME, none of
// toolgate's own variables; per principal, at most max_processes.
func TestStdioProcessesGetOnlyTheirEnvAndAreCapped(t *testing.T) {
	t.Setenv("TOOLGATE_TEST_SECRET", "s3cret")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := upstreamConfig(t, fmt.Sprintf("name: local\ncommand: [%q]\nenv: {UPSTREAMTEST_STDIO: \"1\", GREETING: hello}\nmax_processes: 1", exe))
	p := startPool(t, Options{}, cfg)
	res := call(t, toolNamed(t, p, "local_env"), "alice", nil)
	var env []string
	if err := json.Unmarshal([]byte(text(res)), &env); err != nil {
		t.Fatalf("env: %v: %s", err, text(res))
	}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains([]string{"PATH", "HOME", "UPSTREAMTEST_STDIO", "GREETING"}, k) {
			t.Errorf("the process got %s", kv)
		}
	}
	if !slices.Contains(env, "GREETING=hello") {
		t.Errorf("env = %v, want GREETING=hello", env)
	}
	if res := call(t, toolNamed(t, p, "local_env"), "bob", nil); !res.IsError || !strings.Contains(text(res), "limit of 1 processes") {
		t.Errorf("a second principal at max_processes 1 = %+v", res)
	}
	if res := call(t, toolNamed(t, p, "local_env"), "alice", nil); res.IsError {
		t.Errorf("alice again = %+v", res)
	}
}

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }

// recorder keeps what a pool reports through Options' callbacks.
type recorder struct {
	mu       sync.Mutex
	requests map[string]int // "upstream method outcome" -> count
	up       map[string]bool
	procs    map[string]int
}

func newRecorder() *recorder {
	return &recorder{requests: map[string]int{}, up: map[string]bool{}, procs: map[string]int{}}
}

func (r *recorder) options(o Options) Options {
	o.OnRequest = func(up, method, outcome string, d time.Duration) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if d < 0 {
			panic("negative duration")
		}
		r.requests[up+" "+method+" "+outcome]++
	}
	o.OnUp = func(up string, ok bool) { r.mu.Lock(); r.up[up] = ok; r.mu.Unlock() }
	o.OnProcesses = func(up string, n int) { r.mu.Lock(); r.procs[up] = n; r.mu.Unlock() }
	return o
}

func (r *recorder) snapshot() (map[string]int, map[string]bool, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.requests), maps.Clone(r.up), maps.Clone(r.procs)
}

// Every request sent upstream is reported with its method and outcome, and
// each listing's verdict as up or down.
func TestReportsRequestsAndState(t *testing.T) {
	up := upstreamtest.Start(t)
	rec := newRecorder()
	changed := make(chan struct{}, 8)
	p := startPool(t, rec.options(Options{OnChange: func() { changed <- struct{}{} }}),
		upstreamConfig(t, "name: up\nurl: "+up.URL+"\nsessions: shared"))
	<-changed
	echo := toolNamed(t, p, "up_echo")
	call(t, echo, "alice", map[string]any{"text": "x"})
	reqs, ups, _ := rec.snapshot()
	// The upstream advertises prompts and resources: they are listed too.
	want := map[string]int{"up initialize success": 1, "up tools/list success": 1, "up tools/call success": 1,
		"up prompts/list success": 1, "up resources/list success": 1, "up resources/templates/list success": 1}
	if !maps.Equal(reqs, want) || !ups["up"] {
		t.Errorf("reported %v, up %v; want %v, up", reqs, ups, want)
	}

	up.Close()
	call(t, echo, "alice", map[string]any{"text": "x"})
	<-changed // listed again: down
	reqs, ups, _ = rec.snapshot()
	if reqs["up tools/call unavailable"] != 1 || ups["up"] {
		t.Errorf("after the upstream died: reported %v, up %v", reqs, ups)
	}
}

// A stdio upstream reports its processes running, and a call refused at
// max_processes.
func TestReportsProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := upstreamConfig(t, fmt.Sprintf("name: local\ncommand: [%q]\nenv: {UPSTREAMTEST_STDIO: \"1\"}\nmax_processes: 1", exe))
	p, err := New([]config.Upstream{cfg}, rec.options(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := p.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Listed()
	if _, _, procs := rec.snapshot(); procs["local"] != 1 {
		t.Errorf("processes after the first listing = %d, want 1 (the listing session's)", procs["local"])
	}
	env := toolNamed(t, p, "local_env")
	call(t, env, "alice", nil)
	call(t, env, "bob", nil)
	reqs, _, procs := rec.snapshot()
	if procs["local"] != 2 || reqs["local tools/call refused"] != 1 || reqs["local tools/call success"] != 1 {
		t.Errorf("processes %d, requests %v; want 2 and one call success, one refused", procs["local"], reqs)
	}
	cancel()
	wait()
	if _, _, procs := rec.snapshot(); procs["local"] != 0 {
		t.Errorf("processes after Close = %d, want 0", procs["local"])
	}
}

// notifications/tools/list_changed from an upstream makes the pool list its
// tools again at once, long before the next RefreshInterval (MCP
// server/tools, "List Changed Notification").
func TestListChangedListsTheToolsAgainAtOnce(t *testing.T) {
	up := upstreamtest.Start(t)
	changed := make(chan struct{}, 8)
	p := startPool(t, Options{RefreshInterval: time.Hour, OnChange: func() { changed <- struct{}{} }},
		upstreamConfig(t, "name: up\nurl: "+up.URL))
	<-changed // the first listing
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the tools were not listed again", what)
		}
	}
	up.AddTool("extra")
	wait("a tool added")
	if got := names(p.Tools()); !slices.Contains(got, "up_extra") {
		t.Errorf("after a tool was added: %v", got)
	}
	if res := call(t, toolNamed(t, p, "up_extra"), "alice", nil); res.IsError || text(res) != "extra" {
		t.Errorf("up_extra = %+v", res)
	}
	up.RemoveTool("echo")
	wait("a tool removed")
	if got := names(p.Tools()); slices.Contains(got, "up_echo") || !slices.Contains(got, "up_extra") {
		t.Errorf("after echo was removed: %v", got)
	}
}

// A stdio upstream whose process exits at start is not started again in a
// loop, however many calls fail and refreshes are asked for: it is retried
// with backoff (the first retry a second after the failure).
func TestADownUpstreamIsNotRestartedInALoop(t *testing.T) {
	starts := filepath.Join(t.TempDir(), "starts")
	cfg := upstreamConfig(t, fmt.Sprintf("name: crash\ncommand: [sh, -c, 'echo >> \"$STARTS\"; exit 1']\nenv: {STARTS: %q}", starts))
	p := startPool(t, Options{RefreshInterval: time.Hour}, cfg)
	count := func() int {
		b, _ := os.ReadFile(starts)
		return strings.Count(string(b), "\n")
	}
	if n := count(); n != 1 {
		t.Fatalf("starts after the first listing = %d, want 1", n)
	}
	u := p.ups[0]
	for _, shared := range []bool{false, true} {
		u.cfg.Sessions = map[bool]string{false: "per_principal", true: "shared"}[shared]
		for range 25 {
			res := call(t, Tool{Server: "crash", ServerTool: mcpserver.ServerTool{Tool: mcp.Tool{Name: "crash_x"}, Handler: u.forward("x")}}, "alice", nil)
			if !res.IsError || !strings.Contains(text(res), "upstream crash is unavailable") {
				t.Fatalf("a call to a down upstream = %+v", res)
			}
			u.askRefresh()
		}
	}
	// The retries a second or two apart may have come meanwhile; 50 calls
	// and 50 refreshes did not each start one.
	if n := count(); n > 3 {
		t.Errorf("starts = %d after 50 failed calls and 50 refresh requests, want at most 3", n)
	}
	if len(p.Tools()) != 0 || p.Status()[0].Up {
		t.Errorf("a crashing upstream: tools %v, status %+v", names(p.Tools()), p.Status())
	}
}
