package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// listener is a client of the principal of token with a GET stream open
// for as long as the test runs (g.connect's stream ends with the context
// its Start had), and the count of the notifications/tools/list_changed
// it gets.
func listener(t *testing.T, g *gate, token string) (*client.Client, *atomic.Int32) {
	t.Helper()
	return listenerWith(t, g, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
}

// listenerWith is listener for a client made with opts.
func listenerWith(t *testing.T, g *gate, opts ...transport.StreamableHTTPCOption) (*client.Client, *atomic.Int32) {
	t.Helper()
	c, err := client.NewStreamableHttpClient(g.URL+"/mcp", append(opts, transport.WithContinuousListening())...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := notifications(c, mcp.MethodNotificationToolsListChanged)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = "2025-06-18"
	req.Params.ClientInfo = mcp.Implementation{Name: "toolgate-test", Version: "1"}
	if _, err := c.Initialize(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	return c, n
}

// An upstream's tools/list_changed reaches only the client sessions whose
// visible list changed: a tool only editors may see appears, and the
// editor's session is told, the reader's is not; a change both see reaches
// both.
func TestUpstreamListChangedNotifiesOnlySessionsWhoseListChanged(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true), func(c *config.Config, _ *server.Options) {
		data := strings.Replace(gatewayData, `"up_echo": {},`, `"up_echo": {}, "up_extra": {"any_of": {"permissions": ["upstream"]}},`, 1)
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	aud := []string{g.Config.ResourceURL()}
	reader, readerN := listener(t, g, tn.Token(idptest.Claims{Sub: "reader", Audience: aud}))
	editor, editorN := listener(t, g, tn.Token(idptest.Claims{Sub: "editor", Audience: aud, Permissions: []string{"upstream"}}))
	for _, c := range []*client.Client{reader, editor} {
		if got := toolNames(t, c); !slices.Contains(got, "up_echo") || slices.Contains(got, "up_extra") {
			t.Fatalf("before: %v", got)
		}
	}

	up.AddTool("extra")
	// A notification to the reader would go out with the editor's.
	waitFor(t, "the editor's notification", func() bool { return editorN.Load() > 0 })
	if got := toolNames(t, editor); !slices.Contains(got, "up_extra") {
		t.Errorf("the editor after the notification: %v", got)
	}
	if got := toolNames(t, reader); slices.Contains(got, "up_extra") {
		t.Errorf("the reader sees %v", got)
	}

	// A change both see: the reader's first notification.
	up.RemoveTool("echo")
	waitFor(t, "the reader's notification", func() bool { return readerN.Load() > 0 })
	waitFor(t, "the editor's second notification", func() bool { return editorN.Load() == 2 })
	if n := readerN.Load(); n != 1 {
		t.Errorf("the reader got %d notifications, want 1 (none for up_extra)", n)
	}
}

// After a policy reload, a session whose list is the same is not told; one
// whose list changed is.
func TestPolicyReloadNotifiesOnlySessionsWhoseListChanged(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	aud := []string{g.Config.ResourceURL()}
	plain, plainN := listener(t, g, tn.Token(idptest.Claims{Sub: "plain", Audience: aud}))
	artist, artistN := listener(t, g, tn.Token(imageClaims(tn.Provider(), idptest.Claims{Sub: "artist", Audience: aud})))
	toolNames(t, plain)
	if got := toolNames(t, artist); !slices.Contains(got, "image_generation") {
		t.Fatalf("the artist sees %v", got)
	}
	// image_generation hidden from everyone: only the artist's list changes.
	g.writePolicyFile("data.json", `{"tool_rules": {"add": {}, "whoami": {}}}`)
	waitFor(t, "the artist's notification", func() bool { return artistN.Load() > 0 })
	// whoami hidden too: both lists change.
	g.writePolicyFile("data.json", `{"tool_rules": {"add": {}}}`)
	waitFor(t, "the plain user's notification", func() bool { return plainN.Load() > 0 })
	waitFor(t, "the artist's second notification", func() bool { return artistN.Load() == 2 })
	if n := plainN.Load(); n != 1 {
		t.Errorf("the plain user got %d notifications, want 1", n)
	}
}

// A stdio upstream whose process exits at start has no tools: a call of one
// is answered like a call of a tool that does not exist, and the other
// upstream and the built-in tools keep working.
func TestGatewayCrashingStdioUpstreamIsIsolated(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true), func(c *config.Config, _ *server.Options) {
		c.Upstreams = append(c.Upstreams, config.Upstream{Name: "crash", Command: []string{"sh", "-c", "exit 1"}})
	})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	if got, want := sorted(toolNames(t, c)), []string{"add", "up_echo", "up_slow", "whoami"}; !slices.Equal(got, want) {
		t.Errorf("tools = %v, want %v", got, want)
	}
	_, crashErr := callTool(c, "crash_echo", nil)
	_, missingErr := callTool(c, "nothing_echo", nil)
	if crashErr == nil || strings.ReplaceAll(crashErr.Error(), "crash_echo", "X") != strings.ReplaceAll(missingErr.Error(), "nothing_echo", "X") {
		t.Errorf("a crashing upstream's tool: %v; a missing tool: %v", crashErr, missingErr)
	}
	if res, err := callTool(c, "up_echo", map[string]any{"text": "hi"}); err != nil || text(res) != "hi" {
		t.Errorf("up_echo = %v, %v", res, err)
	}
	if res, err := callTool(c, "add", map[string]any{"a": 1, "b": 2}); err != nil || text(res) != "3" {
		t.Errorf("add = %v, %v", res, err)
	}
	if _, body := g.readyz(); !strings.Contains(mustJSON(t, body["upstreams"]), `"name":"crash","tools":0,"up":false`) {
		t.Errorf("readyz upstreams = %v", body["upstreams"])
	}
}

// An HTTP upstream that goes down loses its tools, and gets them back when
// it answers again on the same address, without waiting for the 30 s
// refresh.
func TestGatewayRecoveredUpstreamGetsItsToolsBack(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withUpstream(up.URL, true))
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	if got := toolNames(t, c); !slices.Contains(got, "up_echo") {
		t.Fatalf("before: %v", got)
	}
	up.Close()
	if res, err := callTool(c, "up_echo", map[string]any{"text": "x"}); err != nil || !res.IsError {
		t.Errorf("up_echo while down = %v, %v", res, err)
	}
	waitFor(t, "up_echo withdrawn", func() bool { return !slices.Contains(toolNames(t, c), "up_echo") })
	if err := up.Reopen(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "up_echo back", func() bool { return slices.Contains(toolNames(t, c), "up_echo") })
	if res, err := callTool(c, "up_echo", map[string]any{"text": "back"}); err != nil || text(res) != "back" {
		t.Errorf("up_echo after the upstream came back = %v, %v", fmt.Sprint(res), err)
	}
}
