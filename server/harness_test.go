package server_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/internal/wire"
	"github.com/toolgate/toolgate/server"
)

// gate is a running toolgate on loopback, with its own copy of the default
// policy that a test may edit.
type gate struct {
	t         testing.TB
	URL       string // public URL, no trailing slash
	PolicyDir string
	Config    *config.Config
	srv       *server.Server
	decisions *logBuffer
}

// decisionLines returns the decision log lines written so far, decoded.
func (g *gate) decisionLines() []map[string]any {
	g.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.decisions.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			g.t.Fatalf("decision log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// scrape returns the /metrics exposition of the gate.
func (g *gate) scrape(url string) string {
	g.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return readAll(g.t, resp.Body)
}

type gateOption func(*config.Config, *server.Options)

func withAnonymous() gateOption {
	return func(c *config.Config, _ *server.Options) { c.Anonymous = true }
}

func withOrigins(o ...string) gateOption {
	return func(c *config.Config, _ *server.Options) { c.AllowedOrigins = o }
}

func withOptions(f func(*server.Options)) gateOption {
	return func(_ *config.Config, o *server.Options) { f(o) }
}

func withScopes(s ...string) gateOption {
	return func(c *config.Config, _ *server.Options) { c.ScopesSupported = s }
}

// startGate runs toolgate trusting the tenants and waits until it is ready.
func startGate(t testing.TB, tenants []*idptest.Tenant, opts ...gateOption) *gate {
	t.Helper()
	g, _ := launch(t, tenants, opts...)
	g.waitReady()
	return g
}

// startGateNotReady runs toolgate without waiting for readiness.
func startGateNotReady(t testing.TB, tenants []*idptest.Tenant, opts ...gateOption) *gate {
	t.Helper()
	g, _ := launch(t, tenants, opts...)
	return g
}

// startStoppableGate runs toolgate and returns a stop function that shuts it
// down the way SIGTERM does and returns Serve's error.
func startStoppableGate(t testing.TB, tenants []*idptest.Tenant, opts ...gateOption) (*gate, func() error) {
	t.Helper()
	g, stop := launch(t, tenants, opts...)
	g.waitReady()
	return g, stop
}

// startGateOn is startGate on a listener of the test's own.
func startGateOn(t testing.TB, ln net.Listener, tenants []*idptest.Tenant, opts ...gateOption) *gate {
	t.Helper()
	g, _ := launchOn(t, ln, tenants, opts...)
	g.waitReady()
	return g
}

func launch(t testing.TB, tenants []*idptest.Tenant, opts ...gateOption) (*gate, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return launchOn(t, ln, tenants, opts...)
}

func launchOn(t testing.TB, ln net.Listener, tenants []*idptest.Tenant, opts ...gateOption) (*gate, func() error) {
	t.Helper()
	dir := copyPolicy(t)
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Policy.Dir = dir
	cfg.Tokens.JWKSUnknownKIDInterval = time.Second
	cfg.DecisionLog.FlushInterval = 0 // tests read each line as soon as it is decided
	for _, tn := range tenants {
		cfg.Issuers = append(cfg.Issuers, config.Issuer{Name: tn.Provider(), Provider: tn.Provider(), Issuer: tn.Issuer()})
	}
	decisions := &logBuffer{}
	so := server.Options{Config: cfg, Logger: testLogger(t), DecisionLog: decisions}
	for _, o := range opts {
		o(cfg, &so)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := wire.Server(context.Background(), so, wire.Sources{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, URL: cfg.PublicURL, PolicyDir: dir, Config: cfg, srv: srv, decisions: decisions}
	return g, g.serve(ln)
}

// serve runs g.srv on ln until the test ends, and returns a stop function
// that shuts it down the way SIGTERM does and returns Serve's error.
func (g *gate) serve(ln net.Listener) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.srv.Serve(ctx, ln, 5*time.Second) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	g.t.Cleanup(func() {
		if err := stop(); err != nil {
			g.t.Errorf("serve: %v", err)
		}
	})
	return stop
}

// slowTool is a tool that signals when it starts and finishes when released;
// it is the whole catalog, and the policy lets everyone use it.
func slowTool(started chan<- struct{}, release <-chan struct{}) gateOption {
	return func(c *config.Config, o *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(`{"tool_rules": {"slow": {}}}`), 0o644); err != nil {
			panic(err)
		}
		o.Tools = []mcpserver.ServerTool{{
			Tool: mcp.NewTool("slow", mcp.WithDescription("waits to be released")),
			Handler: func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				close(started)
				<-release
				return mcp.NewToolResultText("done"), nil
			},
		}}
	}
}

func (g *gate) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatal("toolgate did not become ready")
}

// readyz returns the readiness status and body.
func (g *gate) readyz() (int, map[string]any) {
	g.t.Helper()
	resp, err := http.Get(g.URL + "/readyz")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// writePolicyFile replaces a file of the gate's policy directory.
func (g *gate) writePolicyFile(name, content string) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.PolicyDir, name), []byte(content), 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// copyPolicy copies the repository's default policy to a temporary folder.
func copyPolicy(t testing.TB) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "rego")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, d.Name()), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// connect opens an MCP session with the token through mcp-go's client.
func (g *gate) connect(token string, opts ...transport.StreamableHTTPCOption) *client.Client {
	g.t.Helper()
	c, err := g.dial(token, opts...)
	if err != nil {
		g.t.Fatalf("connect: %v", err)
	}
	return c
}

func (g *gate) dial(token string, opts ...transport.StreamableHTTPCOption) (*client.Client, error) {
	if token != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	c, err := client.NewStreamableHttpClient(g.URL+"/mcp", opts...)
	if err != nil {
		return nil, err
	}
	g.t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = "2025-06-18"
	req.Params.ClientInfo = mcp.Implementation{Name: "toolgate-test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		return nil, err
	}
	return c, nil
}

func toolNames(t testing.TB, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

func callTool(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctx, req)
}

// rawPost sends one JSON-RPC message with plain HTTP, for the answers an MCP
// client hides (status codes and headers).
func (g *gate) rawPost(token, session, body string, header ...string) *http.Response {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// deleteSession sends the owner's DELETE for session to g.
func (g *gate) deleteSession(token, session string) int {
	g.t.Helper()
	resp, err := http.DefaultClient.Do(newMCPRequest(http.MethodDelete, g.URL, token, session, ""))
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// notifications counts the notifications of method that c gets.
func notifications(c *client.Client, method string) *atomic.Int32 {
	var n atomic.Int32
	c.OnNotification(func(m mcp.JSONRPCNotification) {
		if m.Method == method {
			n.Add(1)
		}
	})
	return &n
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func callBody(tool string, args string) string {
	return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
}

func removeAll(t testing.TB, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}
