package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/ratelimit/redistest"
	"github.com/toolgate/toolgate/server"
)

// withLimitedAdd gives the default policy's add a limit of n calls an hour
// for each principal (tool_rules.add.limits), and store as limits.store.
func withLimitedAdd(n int, store string) gateOption {
	return func(c *config.Config, _ *server.Options) {
		data := fmt.Sprintf(`{"tool_rules": {"add": {"limits": [{"each": "principal", "rate": %d, "per": "1h"}]}, "whoami": {}}}`, n)
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(data), 0o644); err != nil {
			panic(err)
		}
		c.Limits.Store = store
	}
}

// callMany makes m concurrent calls of add on c and sorts the results.
func callMany(t *testing.T, c *client.Client, m int) (ok int, limited []*mcp.CallToolResult) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range m {
		wg.Go(func() {
			res, err := callTool(c, "add", map[string]any{"a": 1, "b": 2})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("call: %v", err)
			case res.IsError:
				limited = append(limited, res)
			default:
				ok++
			}
		})
	}
	wg.Wait()
	return ok, limited
}

func resultText(res *mcp.CallToolResult) string {
	if len(res.Content) == 0 {
		return ""
	}
	if tc, ok := res.Content[0].(mcp.TextContent); ok {
		return tc.Text
	}
	return ""
}

func TestRateLimitedCallsWithTheMemoryStore(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withLimitedAdd(3, "memory"))
	aud := []string{g.Config.ResourceURL()}
	if m := g.scrape(g.URL + "/metrics"); !strings.Contains(m, `toolgate_rate_limited_total{tool="add"} 0`) ||
		!strings.Contains(m, `toolgate_rate_limited_total{tool="whoami"} 0`) || !strings.Contains(m, "toolgate_limits_store_up 1") {
		t.Errorf("the rate-limit series do not start at 0 for every tool, or the store is not up:\n%s", grep(m, "toolgate_limits")+"\n"+grep(m, "toolgate_rate"))
	}
	alice := g.connect(tn.Token(idptest.Claims{Sub: "alice", Audience: aud}))
	ok, limited := callMany(t, alice, 10)
	if ok != 3 || len(limited) != 7 {
		t.Fatalf("alice: %d of 10 calls ran and %d were limited, want 3 and 7", ok, len(limited))
	}
	for _, res := range limited {
		text := resultText(res)
		if !strings.HasPrefix(text, "Rate limit exceeded: add: 3 calls per 1h for each principal; retry after ") || !strings.HasSuffix(text, "s") {
			t.Errorf("text %q", text)
		}
		meta := res.Meta.AdditionalFields
		if id, _ := meta["decision_id"].(string); id == "" {
			t.Errorf("_meta %v has no decision_id", meta)
		}
		// 1h / 3: one call back every 20 minutes.
		if s, _ := meta["retry_after_seconds"].(float64); s < 1 || s > 1200 || !strings.Contains(text, fmt.Sprintf("retry after %ds", int(s))) {
			t.Errorf("_meta.retry_after_seconds %v beside %q", meta["retry_after_seconds"], text)
		}
	}
	// Another principal has a budget of its own; a tool without limits runs.
	bob := g.connect(tn.Token(idptest.Claims{Sub: "bob", Audience: aud}))
	if ok, _ := callMany(t, bob, 5); ok != 3 {
		t.Errorf("bob: %d of 5 calls ran, want 3", ok)
	}
	for range 5 {
		if res, err := callTool(alice, "whoami", nil); err != nil || res.IsError {
			t.Fatalf("whoami, which has no limit: %v %+v", err, res)
		}
	}
	m := g.scrape(g.URL + "/metrics")
	for _, want := range []string{
		`toolgate_rate_limited_total{tool="add"} 9`,
		`toolgate_policy_decisions_total{action="tools/call",reason="rate_limited",result="deny",tool="add"} 9`,
		`toolgate_tool_calls_total{outcome="success",tool="add"} 6`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, `tool="add"`))
		}
	}
	if strings.Contains(m, "alice") {
		t.Error("a limit's key is a metric label")
	}
	var lines int
	for _, d := range g.decisionLines() {
		if d["reason_code"] != "rate_limited" {
			continue
		}
		lines++
		if key, _ := d["limit_key"].(string); !strings.Contains(key, `"principal"`) || d["result"] != "deny" {
			t.Errorf("a limited call's decision log line: %v", d)
		}
	}
	if lines != 9 {
		t.Errorf("%d decision log lines say rate_limited, want 9", lines)
	}
	if _, body := g.readyz(); body["limits_store"] != "memory" || body["limits_store_up"] != true {
		t.Errorf("/readyz: %v", body)
	}
}

// Two gates on one Redis share the budgets; with Redis stopped, limited
// calls are refused with a clear error and the others run; with Redis back,
// counting resumes.
func TestRateLimitsSharedOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g1 := startGate(t, []*idptest.Tenant{tn}, withLimitedAdd(4, rs.URL()))
	g2 := startGate(t, []*idptest.Tenant{tn}, withLimitedAdd(4, rs.URL()))
	c1 := g1.connect(tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g1.Config.ResourceURL()}}))
	c2 := g2.connect(tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g2.Config.ResourceURL()}}))
	ok1, _ := callMany(t, c1, 5)
	ok2, _ := callMany(t, c2, 5)
	if ok1+ok2 != 4 {
		t.Fatalf("%d + %d calls ran on two gates sharing a limit of 4", ok1, ok2)
	}

	rs.Stop()
	res, err := callTool(c1, "add", map[string]any{"a": 1, "b": 2})
	if err != nil || !res.IsError || resultText(res) != "Rate limits cannot be checked: the limit store is unreachable; the call was not run" {
		t.Errorf("a limited call with Redis stopped: %v %+v", err, res)
	}
	if res, err := callTool(c1, "whoami", nil); err != nil || res.IsError {
		t.Errorf("a call without limits with Redis stopped: %v %+v", err, res)
	}
	if code, body := g1.readyz(); code != 200 || body["limits_store_up"] != false {
		t.Errorf("/readyz with Redis stopped: %d %v", code, body)
	}
	if m := g1.scrape(g1.URL + "/metrics"); !strings.Contains(m, "toolgate_limits_store_up 0") ||
		!strings.Contains(m, `reason="limits_unavailable",result="error",tool="add"} 1`) {
		t.Errorf("metrics with Redis stopped:\n%s", grep(m, "toolgate_limits")+"\n"+grep(m, "toolgate_rate"))
	}

	rs.Restart() // empty: the budget starts full
	ok1, _ = callMany(t, c1, 3)
	ok2, _ = callMany(t, c2, 3)
	if ok1+ok2 != 4 {
		t.Errorf("after Redis came back, %d + %d calls ran, want 4", ok1, ok2)
	}
	if _, body := g1.readyz(); body["limits_store_up"] != true {
		t.Errorf("/readyz with Redis back: %v", body)
	}
}
