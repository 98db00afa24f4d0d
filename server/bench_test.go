package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/internal/wire"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/tools"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// BenchmarkStartup measures config read to ready with the development
// issuer (no JWKS fetch): parse, compile the default policy, listen, serve
// the first 200 from /readyz.
func BenchmarkStartup(b *testing.B) {
	key := filepath.Join(b.TempDir(), "dev.pem")
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := config.Parse([]byte("listen: 127.0.0.1:0\nanonymous: true\n"))
		if err != nil {
			b.Fatal(err)
		}
		dev, err := idp.LoadDevIssuer(key, cfg.PublicURL+"/dev", cfg.ResourceURL())
		if err != nil {
			b.Fatal(err)
		}
		is, _ := dev.Issuer()
		srv, err := wire.Server(context.Background(), server.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)}, wire.Sources{Issuers: []idp.Issuer{is}})
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { srv.Serve(ctx, ln, time.Second); close(done) }()
		resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("readyz: %v %v", resp, err)
		}
		resp.Body.Close()
		cancel()
		<-done
	}
}

// BenchmarkIdleSessionMemory reports the heap kept by each open, idle MCP
// session (initialize, then nothing).
func BenchmarkIdleSessionMemory(b *testing.B) {
	tn := idptest.NewTenant(b, idptest.ProviderAuth0)
	g := startGate(b, []*idptest.Tenant{tn}, manySessions)
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	const n = 2000
	b.ReportAllocs()
	for b.Loop() {
		before := heap()
		ids := openSessions(b, g, tok, n)
		after := heap()
		b.ReportMetric(float64(after-before)/n, "B/session")
		closeSessions(b, g, tok, ids)
	}
}

// Sessions opened and closed leave nothing behind: no goroutine, no
// session, bounded heap.
func TestSessionsOpenedAndClosedLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of sessions")
	}
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, manySessions)
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	closeSessions(t, g, tok, openSessions(t, g, tok, 200)) // warm up pools
	http.DefaultClient.CloseIdleConnections()
	goroutines, before := runtime.NumGoroutine(), heap()
	for range 5 {
		closeSessions(t, g, tok, openSessions(t, g, tok, 2000))
	}
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "goroutines to settle", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
	if got := heap(); got > before+4<<20 {
		t.Errorf("heap grew from %d to %d bytes after 10000 sessions", before, got)
	}
	if text := g.scrape(g.URL + "/metrics"); !strings.Contains(text, "toolgate_sessions_active 0") {
		t.Errorf("sessions still open:\n%s", grep(text, "toolgate_sessions_active"))
	}
}

// manySessions lifts the per-principal session bound for tests that open
// thousands of sessions as one principal.
func manySessions(c *config.Config, _ *server.Options) { c.Limits.MaxSessionsPerPrincipal = 1000000 }

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func openSessions(tb testing.TB, g *gate, tok string, n int) []string {
	ids := make([]string, 0, n)
	for range n {
		req := newMCPRequest(http.MethodPost, g.URL, tok, "", initializeBody)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("Mcp-Session-Id")
		if resp.StatusCode != http.StatusOK || id == "" {
			tb.Fatalf("initialize: %d", resp.StatusCode)
		}
		ids = append(ids, id)
	}
	return ids
}

func closeSessions(tb testing.TB, g *gate, tok string, ids []string) {
	for _, id := range ids {
		resp, err := http.DefaultClient.Do(newMCPRequest(http.MethodDelete, g.URL, tok, id, ""))
		if err != nil {
			tb.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("DELETE: %d", resp.StatusCode)
		}
	}
}

func newMCPRequest(method, base, tok, session, body string) *http.Request {
	req, _ := http.NewRequest(method, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	req.Header.Set("Authorization", "Bearer "+tok)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	return req
}

// BenchmarkGateOverhead measures the gate's own time per tools/call, without
// the network: the same request through a bare mcp-go handler and through
// toolgate's whole handler (token remembered by the connection, decision
// cache hit).
func BenchmarkGateOverhead(b *testing.B) {
	tn := idptest.NewTenant(b, idptest.ProviderAuth0)
	g := startGate(b, []*idptest.Tenant{tn}, withOptions(func(o *server.Options) { o.DecisionLog = io.Discard }))
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	session := openSessions(b, g, tok, 1)[0]
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}`

	bare := mcpserver.NewMCPServer("bare", "1")
	bare.AddTools(tools.Builtin()...)
	bareHandler := mcpserver.NewStreamableHTTPServer(bare, mcpserver.WithStreamableHTTPLogger(slog.New(slog.DiscardHandler)))
	bareSession := func() string {
		w := httptest.NewRecorder()
		bareHandler.ServeHTTP(w, newMCPRequest(http.MethodPost, "http://127.0.0.1", "", "", initializeBody))
		return w.Header().Get("Mcp-Session-Id")
	}()

	run := func(b *testing.B, h http.Handler, host, tok, session string) {
		b.ReportAllocs()
		conn := context.Background()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newMCPRequest(http.MethodPost, host, tok, session, body).WithContext(conn))
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"text":"5"`) {
				b.Fatalf("%d %s", w.Code, w.Body.String())
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bareHandler, "http://127.0.0.1", "", bareSession) })
	b.Run("toolgate", func(b *testing.B) { run(b, g.srv.Handler(), g.URL, tok, session) })
}

// BenchmarkGatewayToolsList measures a warm tools/list of 1000 upstream
// tools without the network: through the upstream's own handler (bare
// mcp-go) and through toolgate's whole handler in front of it. The list is
// served from the gateway's catalog (no request reaches the upstream) and
// the principal's visible set is cached, so the difference is the gate's
// time (issue 15: under 100 µs).
func BenchmarkGatewayToolsList(b *testing.B) {
	const n = 1000
	ts := make([]mcpserver.ServerTool, n)
	for i := range ts {
		name := fmt.Sprintf("tool_%04d", i)
		ts[i] = mcpserver.ServerTool{
			// A raw schema, as the gateway holds an upstream's tools, so
			// that both handlers write the same tools the same way.
			Tool: mcp.NewToolWithRawSchema(name, "synthetic tool "+name, json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`)),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("ok"), nil
			},
		}
	}
	bare := mcpserver.NewMCPServer("bare", "1", mcpserver.WithToolCapabilities(true))
	bare.AddTools(ts...)
	bareHandler := mcpserver.NewStreamableHTTPServer(bare, mcpserver.WithStreamableHTTPLogger(slog.New(slog.DiscardHandler)))
	up := httptest.NewServer(bareHandler)
	b.Cleanup(up.Close)

	tn := idptest.NewTenant(b, idptest.ProviderAuth0)
	g := startGate(b, []*idptest.Tenant{tn}, withOptions(func(o *server.Options) { o.DecisionLog = io.Discard }),
		func(c *config.Config, _ *server.Options) {
			c.BuiltinTools = false
			c.Upstreams = []config.Upstream{{Name: "up", URL: up.URL + "/mcp", Timeout: 5 * time.Second}}
			if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(`{"server_rules": {"up": {}}}`), 0o644); err != nil {
				b.Fatal(err)
			}
		})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	session := openSessions(b, g, tok, 1)[0]
	bareSession := func() string {
		w := httptest.NewRecorder()
		bareHandler.ServeHTTP(w, newMCPRequest(http.MethodPost, "http://127.0.0.1", "", "", initializeBody))
		return w.Header().Get("Mcp-Session-Id")
	}()
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	run := func(b *testing.B, h http.Handler, host, tok, session, first string) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newMCPRequest(http.MethodPost, host, tok, session, body))
			if w.Code != http.StatusOK || strings.Count(w.Body.String(), `"name":"`) < n || !strings.Contains(w.Body.String(), first) {
				b.Fatalf("%d %.300s", w.Code, w.Body.String())
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bareHandler, "http://127.0.0.1", "", bareSession, `"tool_0999"`) })
	b.Run("toolgate", func(b *testing.B) { run(b, g.srv.Handler(), g.URL, tok, session, `"up_tool_0999"`) })
}
