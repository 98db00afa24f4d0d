package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// A test binary started with UPSTREAMTEST_STDIO=1 is a stdio upstream.
func TestMain(m *testing.M) { upstreamtest.Main(m) }

// withUpstreams puts ups behind the gate, every tool of each visible to
// everyone (server_rules), with the built-in add and whoami.
func withUpstreams(ups ...config.Upstream) gateOption {
	return func(c *config.Config, _ *server.Options) {
		c.Upstreams = ups
		rules := map[string]any{}
		for _, u := range ups {
			rules[u.Name] = map[string]any{}
		}
		data, _ := json.Marshal(map[string]any{"tool_rules": map[string]any{"add": map[string]any{}, "whoami": map[string]any{}}, "server_rules": rules})
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), data, 0o644); err != nil {
			panic(err)
		}
	}
}

func httpUpstream(name, url string) config.Upstream {
	return config.Upstream{Name: name, URL: url, Timeout: 30 * time.Second}
}

// stdioUpstream is this test binary, serving upstreamtest over stdio.
func stdioUpstream(t *testing.T, name string) config.Upstream {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return config.Upstream{Name: name, Command: []string{exe}, Env: map[string]string{"UPSTREAMTEST_STDIO": "1"}, Timeout: 30 * time.Second}
}

// gateway is a gate with an upstream "other" beside the ones under test,
// whose health each test checks, and alice's client (c, with tok).
type gateway struct {
	*gate
	c   *client.Client
	tok string
	as  func(sub string) *client.Client // another principal's client
}

func startGateway(t *testing.T, ups ...config.Upstream) *gateway {
	t.Helper()
	other := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	gw := &gateway{gate: startGate(t, []*idptest.Tenant{tn}, withUpstreams(append(ups, httpUpstream("other", other.URL))...))}
	token := func(sub string) string {
		return tn.Token(idptest.Claims{Sub: sub, Audience: []string{gw.Config.ResourceURL()}, Scopes: []string{"openid"}})
	}
	gw.as = func(sub string) *client.Client { return gw.connect(token(sub)) }
	gw.tok = token("alice")
	gw.c = gw.connect(gw.tok)
	return gw
}

// othersWork asserts that the built-in tools and the upstream "other" still
// answer.
func othersWork(t *testing.T, c *client.Client) {
	t.Helper()
	if res, err := callTool(c, "other_echo", map[string]any{"text": "still here"}); err != nil || res.IsError || text(res) != "still here" {
		t.Errorf("the other upstream: %+v, %v", res, err)
	}
	if res, err := callTool(c, "add", map[string]any{"a": 1, "b": 2}); err != nil || text(res) != "3" {
		t.Errorf("add: %+v, %v", res, err)
	}
}

// progressOf collects the notifications/progress c gets.
type progressOf struct {
	mu  sync.Mutex
	got []map[string]any
}

func collectProgress(c *client.Client) *progressOf {
	p := &progressOf{}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationProgress) {
			p.mu.Lock()
			p.got = append(p.got, n.Params.AdditionalFields)
			p.mu.Unlock()
		}
	})
	return p
}

// Progress passes through (MCP basic/utilities, "Progress"): two principals
// on one shared upstream session call at once with the same progress
// token; each gets only its own call's notifications, under its own token,
// and the upstream sees tokens of toolgate's, never the clients'.
func TestGatewayProgressReachesOnlyItsCaller(t *testing.T) {
	up := upstreamtest.Start(t)
	shared := httpUpstream("up", up.URL)
	shared.Sessions = "shared"
	as := startGateway(t, shared).as
	steps := map[string]int{"alice": 2, "bob": 5}
	progress := map[string]*progressOf{}
	var wg sync.WaitGroup
	for sub, n := range steps {
		c := as(sub)
		progress[sub] = collectProgress(c)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req := mcp.CallToolRequest{}
			req.Params.Name, req.Params.Arguments = "up_progress", map[string]any{"steps": n, "work_ms": 100}
			req.Params.Meta = &mcp.Meta{ProgressToken: "tok-1"}
			if res, err := c.CallTool(ctx, req); err != nil || res.IsError {
				t.Errorf("%s: up_progress = %+v, %v", sub, res, err)
			}
		})
	}
	wg.Wait()
	for sub, n := range steps {
		got := progress[sub].got
		if len(got) != n {
			t.Errorf("%s got %d notifications/progress, want %d: %v", sub, len(got), n, got)
		}
		for i, p := range got {
			if p["progressToken"] != "tok-1" || p["total"] != float64(n) || p["progress"] != float64(i+1) || p["message"] != fmt.Sprintf("step %d", i+1) {
				t.Errorf("%s's notification %d: %v", sub, i, p)
			}
		}
	}
	tokens := map[string]bool{}
	for _, r := range up.Requests() {
		var p struct {
			Meta struct {
				ProgressToken any `json:"progressToken"`
			} `json:"_meta"`
		}
		if r.Method == "tools/call" && json.Unmarshal(r.Params, &p) == nil {
			tokens[fmt.Sprint(p.Meta.ProgressToken)] = true
		}
	}
	if len(tokens) != 2 || tokens["tok-1"] || tokens["<nil>"] {
		t.Errorf("progress tokens upstream: %v, want two of toolgate's own", tokens)
	}
}

// cancelledUpstream waits for the upstream to get notifications/cancelled
// for its only slow call.
func cancelledUpstream(t *testing.T, up *upstreamtest.Server) {
	t.Helper()
	var id json.RawMessage
	for _, r := range up.Requests() {
		if r.Method == "tools/call" && strings.Contains(string(r.Params), `"slow"`) {
			id = r.ID
		}
	}
	waitFor(t, "notifications/cancelled for "+string(id), func() bool {
		for _, r := range up.Requests() {
			var p struct {
				RequestID json.RawMessage `json:"requestId"`
			}
			if r.Method == "notifications/cancelled" && json.Unmarshal(r.Params, &p) == nil && string(p.RequestID) == string(id) {
				return true
			}
		}
		return false
	})
}

// Cancellation passes through (MCP basic/utilities, "Cancellation"): a
// client that cancels its call, or whose connection goes away, has the
// upstream's request cancelled, and its upstream session serves it next.
func TestGatewayCancellationReachesTheUpstream(t *testing.T) {
	for _, how := range []string{"notifications/cancelled", "the connection goes away"} {
		t.Run(how, func(t *testing.T) {
			up := upstreamtest.Start(t)
			g := startGateway(t, httpUpstream("up", up.URL))
			c := g.c
			session, err := callTool(c, "up_session", nil)
			if err != nil || session.IsError {
				t.Fatalf("up_session = %+v, %v", session, err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/mcp", strings.NewReader(callBody("up_slow", `{}`)))
				for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
					"Mcp-Protocol-Version": "2025-06-18", "Mcp-Session-Id": c.GetSessionId()} {
					req.Header.Set(k, v)
				}
				req.Header.Set("Authorization", "Bearer "+g.tok)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			waitFor(t, "the call upstream", func() bool { return up.Calls("slow") == 1 })
			if how == "notifications/cancelled" {
				resp := g.rawPost(g.tok, c.GetSessionId(),
					`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"changed my mind"}}`)
				if resp.StatusCode != http.StatusAccepted {
					t.Errorf("notifications/cancelled: %d", resp.StatusCode)
				}
				if err := <-done; err != nil {
					t.Errorf("the cancelled call: %v", err)
				}
			} else {
				cancel()
				<-done
			}
			cancelledUpstream(t, up)
			if again, err := callTool(c, "up_session", nil); err != nil || text(again) != text(session) {
				t.Errorf("the session after the cancelled call: %q, %v; want %q", text(again), err, text(session))
			}
			othersWork(t, c)
		})
	}
}

// answerID is the id of a JSON-RPC answer as mcp-go writes it.
var answerID = regexp.MustCompile(`"id":("[^"]*"|[0-9]+),`)

// Faults of an upstream reach the client as an isError result at once,
// never a hang, and leave the other upstream and the built-in tools
// working.
func TestGatewayUpstreamFaults(t *testing.T) {
	t.Run("an HTTP upstream dies mid-call", func(t *testing.T) {
		up := upstreamtest.Start(t)
		c := startGateway(t, httpUpstream("up", up.URL)).c
		go func() {
			for up.Calls("slow") == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			up.Close()
		}()
		res, err := callTool(c, "up_slow", nil)
		if err != nil || !res.IsError || text(res) != "upstream up is unavailable" {
			t.Errorf("the call = %+v, %v; want upstream up is unavailable", res, err)
		}
		othersWork(t, c)
		// Each failed call asks for a listing; one that raced with the
		// close may still have found the upstream on a connection not yet
		// closed, so keep calling as a client would.
		waitFor(t, "up's tools withdrawn", func() bool {
			_, _ = callTool(c, "up_echo", map[string]any{"text": "x"})
			return !strings.Contains(strings.Join(toolNames(t, c), ","), "up_")
		})
	})
	t.Run("a stdio process dies mid-call", func(t *testing.T) {
		c := startGateway(t, stdioUpstream(t, "local")).c
		res, err := callTool(c, "local_exit", nil)
		if err != nil || !res.IsError || text(res) != "upstream local is unavailable" {
			t.Errorf("the call = %+v, %v; want upstream local is unavailable", res, err)
		}
		othersWork(t, c)
		// The next call starts another process.
		if res, err := callTool(c, "local_echo", map[string]any{"text": "back"}); err != nil || text(res) != "back" {
			t.Errorf("local_echo after the crash = %+v, %v", res, err)
		}
	})
	t.Run("an upstream never answers", func(t *testing.T) {
		up := upstreamtest.Start(t)
		slow := httpUpstream("up", up.URL)
		slow.Timeout = 300 * time.Millisecond
		c := startGateway(t, slow).c
		res, err := callTool(c, "up_slow", nil)
		if err != nil || !res.IsError || text(res) != "upstream up did not answer within 300ms" {
			t.Errorf("the call = %+v, %v", res, err)
		}
		othersWork(t, c)
	})
	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
		want   string
	}{
		{"an answer that is not JSON", func([]byte) []byte { return []byte("<html>oops</html>") }, "upstream up is unavailable"},
		{"an answer to another request", func(b []byte) []byte {
			return answerID.ReplaceAll(b, []byte(`"id":"someone-else",`))
		}, "upstream up answered a malformed result"},
		{"a result that is not a tool result", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"content":[`), []byte(`"content":7,"x":[`), 1)
		}, "upstream up answered a malformed result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := upstreamtest.Start(t)
			c := startGateway(t, httpUpstream("up", up.URL)).c
			up.Mangle("tools/call", tc.mangle)
			res, err := callTool(c, "up_echo", map[string]any{"text": "hi"})
			if err != nil || !res.IsError || text(res) != tc.want {
				t.Errorf("the call = %+v, %v; want %q", res, err, tc.want)
			}
			othersWork(t, c)
			up.Mangle("tools/call", nil)
			if res, err := callTool(c, "up_echo", map[string]any{"text": "hi"}); err != nil || text(res) != "hi" {
				t.Errorf("up_echo once the upstream answers well = %+v, %v", res, err)
			}
		})
	}
	t.Run("a tools/list result that is not a list", func(t *testing.T) {
		up := upstreamtest.Start(t)
		up.Mangle("tools/list", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"tools":[`), []byte(`"tools":"all of them","x":[`), 1)
		})
		g := startGateway(t, httpUpstream("up", up.URL))
		c := g.c
		if names := strings.Join(toolNames(t, c), ","); strings.Contains(names, "up_") {
			t.Errorf("tools/list = %s, want none of up's", names)
		}
		if _, body := g.readyz(); !strings.Contains(mustJSON(t, body["upstreams"]), `tools/list: malformed result`) {
			t.Errorf("readyz upstreams = %v", body["upstreams"])
		}
		othersWork(t, c)
	})
}
