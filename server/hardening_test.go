package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

// An initialize whose params the gate cannot read would be answered by
// mcp-go with an error, yet leave a session that no one counts (about 12
// KiB each, measured before the fix). The gate refuses such a body itself:
// a flood of them leaves the heap and the session count where they were.
func TestUnreadableRequestsOpenNoSession(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 20,000 requests")
	}
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withAnonymous(), func(c *config.Config, _ *server.Options) {
		c.Limits.MaxSessionsPerPrincipal = 4
	})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":5}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"name":0,"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`,
		`[` + initializeBody + `]`,
	}
	// Warm up the pools the flood uses, then measure.
	flood(t, g, tok, bodies, 300)
	before := heap()
	const n = 20000
	flood(t, g, tok, bodies, n)
	const bound = 8 << 20 // 20,000 kept sessions took about 230 MiB
	grew := int64(heap()) - int64(before)
	t.Logf("heap after %d unreadable initialize requests: %+d bytes", n, grew)
	if grew > bound {
		t.Errorf("heap grew by %d bytes after %d unreadable initialize requests; bound %d", grew, n, bound)
	}
	if text := g.scrape(g.URL + "/metrics"); !strings.Contains(text, "toolgate_sessions_active 0\n") {
		t.Errorf("sessions after the flood:\n%s", grep(text, "toolgate_sessions_active"))
	}
	// The cap still holds for readable ones, and the metric counts them.
	openSessions(t, g, tok, 4)
	if resp := g.rawPost(tok, "", initializeBody); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a fifth session: %d, want 429", resp.StatusCode)
	}
	if text := g.scrape(g.URL + "/metrics"); !strings.Contains(text, "toolgate_sessions_active 4\n") {
		t.Errorf("after four sessions:\n%s", grep(text, "toolgate_sessions_active"))
	}
}

// flood sends n of the bodies, half with the token and half without, from
// four clients at once; each must be refused with 400 and no session id.
func flood(t *testing.T, g *gate, tok string, bodies []string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				bearer := tok
				if i%2 == 1 {
					bearer = ""
				}
				req := newMCPRequest(http.MethodPost, g.URL, bearer, "", bodies[i%len(bodies)])
				if bearer == "" {
					req.Header.Del("Authorization")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Mcp-Session-Id") != "" {
					errs <- fmt.Sprintf("%s: %d, session %q; want 400 and none", bodies[i%len(bodies)], resp.StatusCode, resp.Header.Get("Mcp-Session-Id"))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address addr, so that a test can be two clients on two addresses.
func clientFrom(t *testing.T, addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Token-less clients are told apart by their address: one of them cannot
// take every anonymous place, nor use another's session.
func TestAnonymousSessionsBelongToTheirAddress(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withAnonymous(), func(c *config.Config, _ *server.Options) {
		c.Limits.MaxAnonymousSessionsPerAddress = 2
	})
	one, two := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	post := func(c *http.Client, tok, session, body string) *http.Response {
		req := newMCPRequest(http.MethodPost, g.URL, tok, session, body)
		if tok == "" {
			req.Header.Del("Authorization")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	var ids []string
	for range 2 {
		resp := post(one, "", "", initializeBody)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("anonymous initialize: %d", resp.StatusCode)
		}
		ids = append(ids, resp.Header.Get("Mcp-Session-Id"))
	}
	if resp := post(one, "", "", initializeBody); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a third session from one address: %d, want 429", resp.StatusCode)
	}
	if resp := post(two, "", "", initializeBody); resp.StatusCode != http.StatusOK {
		t.Errorf("another address while the first is at its cap: %d, want 200", resp.StatusCode)
	}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	if resp := post(one, "", ids[0], list); resp.StatusCode != http.StatusOK {
		t.Errorf("its own session: %d", resp.StatusCode)
	}
	if resp := post(two, "", ids[0], list); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another anonymous client with the session id: %d, want 404", resp.StatusCode)
	}
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{g.Config.ResourceURL()}})
	if resp := post(one, alice, ids[0], list); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a token holder with an anonymous session id: %d, want 404", resp.StatusCode)
	}
	del := newMCPRequest(http.MethodDelete, g.URL, "", ids[0], "")
	del.Header.Del("Authorization")
	if resp, err := two.Do(del); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("another anonymous client deleting the session: %v %v, want 404", resp.StatusCode, err)
	}
	if resp := post(one, "", ids[0], list); resp.StatusCode != http.StatusOK {
		t.Errorf("its own session after another's DELETE: %d", resp.StatusCode)
	}
}

// cancellable is a tool that signals when it starts and ends when released
// (outcome "done") or when its call is cancelled (outcome "cancelled").
func cancellable(started chan<- struct{}, release <-chan struct{}, outcome chan<- string) gateOption {
	return func(c *config.Config, o *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(`{"tool_rules": {"wait": {}}}`), 0o644); err != nil {
			panic(err)
		}
		o.Tools = []mcpserver.ServerTool{{
			Tool: mcp.NewTool("wait", mcp.WithDescription("waits to be released or cancelled")),
			Handler: func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				started <- struct{}{}
				select {
				case <-release:
					outcome <- "done"
				case <-ctx.Done():
					outcome <- "cancelled"
				}
				return mcp.NewToolResultText("done"), nil
			},
		}}
	}
}

// modernPost sends one message of the session-less revision (2026-07-28)
// with the headers it requires.
func modernPost(t *testing.T, g *gate, tok, method, name, body string) *http.Response {
	t.Helper()
	req := newMCPRequest(http.MethodPost, g.URL, tok, "", body)
	req.Header.Set("Mcp-Protocol-Version", mcp.ProtocolVersion20260728)
	req.Header.Set(mcp.HeaderMethod, method)
	if name != "" {
		req.Header.Set(mcp.HeaderName, name)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}`

// Without a session, a cancellation is bound to the principal that made
// the request: another principal's notifications/cancelled with the same
// request id does not touch it; its own does.
func TestSessionlessCancellationIsTheSendersOwn(t *testing.T) {
	started, release, outcome := make(chan struct{}, 1), make(chan struct{}), make(chan string, 1)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, cancellable(started, release, outcome))
	aud := []string{g.Config.ResourceURL()}
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: aud})
	bob := tn.Token(idptest.Claims{Sub: "auth0|bob", Audience: aud})
	call := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"wait","arguments":{},` + modernMeta + `}}`
	cancel := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":42,` + modernMeta + `}}`

	run := func() chan string {
		answered := make(chan string, 1)
		go func() {
			resp := modernPost(t, g, alice, "tools/call", "wait", call)
			answered <- fmt.Sprint(resp.StatusCode)
		}()
		<-started
		return answered
	}
	answered := run()
	if resp := modernPost(t, g, bob, "notifications/cancelled", "", cancel); resp.StatusCode != http.StatusAccepted {
		t.Errorf("bob's cancellation: %d, want 202", resp.StatusCode)
	}
	select {
	case o := <-outcome:
		t.Fatalf("alice's call ended (%s) on bob's cancellation", o)
	case <-time.After(300 * time.Millisecond):
	}
	release <- struct{}{}
	if o := <-outcome; o != "done" {
		t.Errorf("alice's call: %s, want done", o)
	}
	<-answered

	answered = run()
	if resp := modernPost(t, g, alice, "notifications/cancelled", "", cancel); resp.StatusCode != http.StatusAccepted {
		t.Errorf("alice's cancellation: %d, want 202", resp.StatusCode)
	}
	select {
	case o := <-outcome:
		if o != "cancelled" {
			t.Errorf("alice's call after her cancellation: %s", o)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's own cancellation did not reach her call")
	}
	<-answered
}

// Every long-lived stream holds one of the principal's places while it is
// open: a GET on the principal's own session, and the 2026-07-28
// subscriptions/listen.
func TestEveryStreamHoldsAPlace(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) { c.Limits.MaxSessionsPerPrincipal = 2 })
	alice := tn.Token(idptest.Claims{Sub: "auth0|alice", Audience: []string{g.Config.ResourceURL()}})
	id := openSessions(t, g, alice, 1)[0]

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := http.DefaultClient.Do(newMCPRequest(http.MethodGet, g.URL, alice, id, "").WithContext(ctx))
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("GET stream on her session: %v %v", stream, err)
	}
	if resp := g.rawPost(alice, "", initializeBody); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("with a session and its GET stream open: %d, want 429", resp.StatusCode)
	}
	if resp, err := http.DefaultClient.Do(newMCPRequest(http.MethodGet, g.URL, alice, id, "")); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a second GET stream on her session: %v %v, want 429", resp.StatusCode, err)
	}
	cancel()
	stream.Body.Close()
	waitFor(t, "the stream's place back", func() bool {
		resp := g.rawPost(alice, "", initializeBody)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// Both places taken by sessions: a listen stream is refused; with one
	// free, it holds it while open.
	listen := `{"jsonrpc":"2.0","id":5,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` + modernMeta + `}}`
	if resp := modernPost(t, g, alice, "subscriptions/listen", "", listen); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("subscriptions/listen at the cap: %d, want 429", resp.StatusCode)
	}
	closeSessions(t, g, alice, []string{id})
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() {
		req := newMCPRequest(http.MethodPost, g.URL, alice, "", listen).WithContext(ctx)
		req.Header.Set("Mcp-Protocol-Version", mcp.ProtocolVersion20260728)
		req.Header.Set(mcp.HeaderMethod, "subscriptions/listen")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	waitFor(t, "the listen stream to hold a place", func() bool {
		return strings.Contains(g.scrape(g.URL+"/metrics"), "toolgate_sessions_active 2\n")
	})
	if resp := g.rawPost(alice, "", initializeBody); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("with a session and a listen stream open: %d, want 429", resp.StatusCode)
	}
	cancel()
	waitFor(t, "the listen stream's place back", func() bool {
		return strings.Contains(g.scrape(g.URL+"/metrics"), "toolgate_sessions_active 1\n")
	})
}

// The decision log speaks only of calls that reached the gate's
// enforcement: a tools/call that mcp-go refuses before it runs (not
// JSON-RPC 2.0, no id, not JSON content) leaves no line.
func TestDecisionLogHasNoLineForACallThatNeverRan(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	session := openSessions(t, g, tok, 1)[0]
	calls := func() int {
		n := 0
		for _, l := range g.decisionLines() {
			if l["action"] == "tools/call" {
				n++
			}
		}
		return n
	}
	for _, c := range []struct{ name, body, contentType string }{
		{"JSON-RPC 1.0", `{"jsonrpc":"1.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}`, "application/json"},
		{"no id", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}`, "application/json"},
		{"text/plain", callBody("add", `{"a":1,"b":2}`), "text/plain"},
	} {
		resp := g.rawPost(tok, session, c.body, "Content-Type", c.contentType)
		body := readAll(t, resp.Body)
		if strings.Contains(body, `"text":"3"`) {
			t.Fatalf("%s: the call ran: %s", c.name, body)
		}
		if n := calls(); n != 0 {
			t.Errorf("%s: %d decision-log lines for a call that never ran", c.name, n)
		}
	}
	resp := g.rawPost(tok, session, callBody("add", `{"a":1,"b":2}`))
	if body := readAll(t, resp.Body); !strings.Contains(body, `"text":"3"`) {
		t.Fatalf("a proper call: %s", body)
	}
	if n := calls(); n != 1 {
		t.Errorf("a proper call: %d decision-log lines, want 1", n)
	}
}

// A call whose arguments are not a JSON object is the client's fault: it is
// denied as a decision that could not be made (fail closed: the tool is not
// found), with the reason code arguments_invalid in the decision log and
// the metric, not counted as a failed evaluation.
func TestArgumentsThatAreNotAnObjectAreArgumentsInvalid(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	session := openSessions(t, g, tok, 1)[0]
	body := readAll(t, g.rawPost(tok, session, callBody("add", `[1,2]`)).Body)
	if !strings.Contains(body, `"code":-32602`) || !strings.Contains(body, "not found") || strings.Contains(body, `"text":"3"`) {
		t.Fatalf("a call with arguments [1,2]: %s, want the tool not found", body)
	}
	var line map[string]any
	for _, l := range g.decisionLines() {
		if l["action"] == "tools/call" {
			line = l
		}
	}
	if line == nil || line["result"] != "deny" || line["reason_code"] != "arguments_invalid" {
		t.Errorf("decision log line %v, want result deny and reason_code arguments_invalid", line)
	}
	if text := g.scrape(g.URL + "/metrics"); !strings.Contains(text, `reason="arguments_invalid",result="deny",tool="add"} 1`) {
		t.Errorf("no arguments_invalid decision counted:\n%s", grep(text, "toolgate_policy_decisions_total"))
	}
}
