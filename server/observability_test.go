package server_test

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

// families parses an exposition into its metric families.
func families(t *testing.T, text string) map[string][]model.LabelSet {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]model.LabelSet{}
	for name, mf := range mfs {
		out[name] = []model.LabelSet{}
		for _, m := range mf.Metric {
			ls := model.LabelSet{}
			for _, l := range m.Label {
				ls[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
			}
			out[name] = append(out[name], ls)
		}
	}
	return out
}

// traffic makes every kind of decision and token outcome once.
func traffic(t *testing.T, g *gate, tn *idptest.Tenant) {
	aud := []string{g.Config.ResourceURL()}
	c := g.connect(tn.Token(imageClaims(tn.Provider(), idptest.Claims{Audience: aud, Scopes: []string{"openid"}})))
	toolNames(t, c)
	callTool(c, "add", map[string]any{"a": 1, "b": 2})
	callTool(c, "image_generation", map[string]any{"prompt": "x"}) // step-up
	callTool(c, "no_such_tool", nil)
	g.rawPost("garbage", "", initializeBody)
	http.Get(g.URL + "/no/such/path")
}

// The contract's families exist with their labels, nothing fails the
// client library's lint, and no label holds a subject or a token.
func TestMetricsAreExposedAndLintClean(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	traffic(t, g, tn)
	text := g.scrape(g.URL + "/metrics")

	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	fams := families(t, text)
	contract := map[string][]string{
		"toolgate_policy_decisions_total":       {"action", "tool", "result", "reason"},
		"toolgate_policy_eval_duration_seconds": {"action"},
		"toolgate_token_validations_total":      {"issuer", "result", "reason"},
		"toolgate_jwks_refreshes_total":         {"issuer", "result"},
		"toolgate_policy_reloads_total":         {"result"},
		"toolgate_policy_revision_info":         {"revision"},
		"toolgate_http_requests_total":          {"route", "method", "code"},
		"toolgate_tool_calls_total":             {"tool", "outcome"},
		"toolgate_sessions_active":              {},
	}
	for name, labels := range contract {
		series, ok := fams[name]
		if !ok {
			if name == "toolgate_policy_reloads_total" {
				continue // no reload happened yet; TestReloadMetrics covers it
			}
			t.Errorf("family %s is missing", name)
			continue
		}
		for _, ls := range series {
			for _, l := range labels {
				if _, ok := ls[model.LabelName(l)]; !ok && !strings.HasSuffix(name, "_seconds") {
					t.Errorf("%s%v lacks label %s", name, ls, l)
				}
			}
		}
	}
	has := func(name string, want model.LabelSet) bool {
		for _, ls := range fams[name] {
			match := true
			for k, v := range want {
				if ls[k] != v {
					match = false
				}
			}
			if match {
				return true
			}
		}
		return false
	}
	for _, want := range []struct {
		name string
		ls   model.LabelSet
	}{
		{"toolgate_policy_decisions_total", model.LabelSet{"action": "tools/call", "tool": "add", "result": "allow", "reason": "allowed"}},
		{"toolgate_policy_decisions_total", model.LabelSet{"action": "tools/call", "tool": "image_generation", "result": "deny", "reason": "insufficient_scope"}},
		{"toolgate_policy_decisions_total", model.LabelSet{"action": "tools/call", "tool": "unknown", "result": "deny", "reason": "not_visible"}},
		{"toolgate_policy_decisions_total", model.LabelSet{"action": "tools/list", "tool": "*", "result": "allow"}},
		{"toolgate_token_validations_total", model.LabelSet{"issuer": "auth0", "result": "valid"}},
		{"toolgate_token_validations_total", model.LabelSet{"issuer": "unknown", "result": "invalid", "reason": "token_malformed"}},
		{"toolgate_jwks_refreshes_total", model.LabelSet{"issuer": "auth0", "result": "success"}},
		{"toolgate_jwks_keys", model.LabelSet{"issuer": "auth0"}},
		{"toolgate_jwks_last_success_age_seconds", model.LabelSet{"issuer": "auth0"}},
		{"toolgate_http_requests_total", model.LabelSet{"route": "/mcp", "method": "POST", "code": "200"}},
		{"toolgate_http_requests_total", model.LabelSet{"route": "/mcp", "method": "POST", "code": "401"}},
		{"toolgate_http_requests_total", model.LabelSet{"route": "/mcp", "method": "POST", "code": "403"}},
		{"toolgate_http_requests_total", model.LabelSet{"route": "unmatched", "method": "GET", "code": "404"}},
		{"toolgate_tool_calls_total", model.LabelSet{"tool": "add", "outcome": "success"}},
		{"toolgate_policy_revision_info", model.LabelSet{"revision": model.LabelValue(g.srv.Policy().Revision())}},
	} {
		if !has(want.name, want.ls) {
			t.Errorf("no series %s%v in:\n%s", want.name, want.ls, grep(text, want.name))
		}
	}
	for name, series := range fams {
		for _, ls := range series {
			for k, v := range ls {
				if s := string(v); strings.Contains(s, "auth0|") || s == "garbage" || s == "no_such_tool" {
					t.Errorf("%s label %s=%q holds a subject, a token or a name from the request", name, k, v)
				}
			}
		}
	}
}

func TestReloadMetrics(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	g.writePolicyFile("broken.rego", "package mcp.authz\nallow if {\n")
	waitFor(t, "a failed reload", func() bool {
		return strings.Contains(g.scrape(g.URL+"/metrics"), `toolgate_policy_reloads_total{result="failure"}`)
	})
	g.writePolicyFile("broken.rego", "package mcp.authz\n")
	waitFor(t, "a good reload", func() bool {
		text := g.scrape(g.URL + "/metrics")
		return strings.Contains(text, `toolgate_policy_reloads_total{result="success"}`) &&
			strings.Contains(text, `toolgate_policy_revision_info{revision="`+g.srv.Policy().Revision()+`"} 1`)
	})
	if n := strings.Count(g.scrape(g.URL+"/metrics"), "toolgate_policy_revision_info{"); n != 1 {
		t.Errorf("%d revision series, want only the one in force", n)
	}
}

func TestMetricsOnTheirOwnAddress(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) { c.Metrics.Listen = addr })
	if resp, err := http.Get(g.URL + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the main listener: %v %v, want 404", resp.StatusCode, err)
	}
	waitFor(t, "the metrics listener", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(g.scrape("http://"+addr+"/metrics"), "toolgate_sessions_active") {
		t.Error("the metrics listener does not serve toolgate's families")
	}
}

func TestDecisionLogLines(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	aud := []string{g.Config.ResourceURL()}
	tok := tn.Token(imageClaims(tn.Provider(), idptest.Claims{Sub: "auth0|carol", Audience: aud, OrgID: "org_9", ClientID: "cli", Scopes: []string{"openid"}}))
	c := g.connect(tok)
	callTool(c, "add", map[string]any{"a": 1, "b": 2})
	callTool(c, "image_generation", map[string]any{"prompt": "x"})
	c2 := g.connect(tn.Token(imageClaims(tn.Provider(), idptest.Claims{Sub: "auth0|carol", Audience: aud, Scopes: []string{"images:write"}})))
	res, _ := callTool(c2, "image_generation", map[string]any{"prompt": strings.Repeat("y", 1001)})

	byResult := map[string]map[string]any{}
	for _, line := range g.decisionLines() {
		if line["action"] == "tools/call" {
			byResult[line["tool"].(string)+"/"+line["result"].(string)+"/"+str(line["reason"])] = line
		}
	}
	allowed := find(t, byResult, "add/allow/")
	stepUp := find(t, byResult, `image_generation/deny/tool "image_generation" requires scope images:write`)
	denied := find(t, byResult, `image_generation/deny/argument "prompt" is longer than 1000 characters`)
	for _, line := range []map[string]any{allowed, stepUp, denied} {
		p, _ := line["principal"].(map[string]any)
		if p["sub"] != "auth0|carol" || p["iss"] != tn.Issuer() || p["provider"] != "auth0" {
			t.Errorf("principal = %v", p)
		}
		for _, k := range []string{"time", "decision_id", "policy_revision", "eval_ms", "arguments"} {
			if _, ok := line[k]; !ok {
				t.Errorf("line lacks %s: %v", k, line)
			}
		}
		if line["policy_revision"] != g.srv.Policy().Revision() {
			t.Errorf("revision = %v", line["policy_revision"])
		}
		if at, err := time.Parse(time.RFC3339Nano, str(line["time"])); err != nil || time.Since(at) > time.Minute || time.Since(at) < 0 {
			t.Errorf("time = %v: not the moment of the decision (%v)", line["time"], err)
		}
	}
	if p := allowed["principal"].(map[string]any); p["org_id"] != "org_9" || p["client_id"] != "cli" {
		t.Errorf("principal = %v", p)
	}
	if args := allowed["arguments"].(map[string]any); args["a"] != 1.0 || args["b"] != 2.0 {
		t.Errorf("arguments = %v", args)
	}
	if scopes, _ := stepUp["required_scopes"].([]any); len(scopes) != 1 || scopes[0] != "images:write" {
		t.Errorf("step-up required_scopes = %v", stepUp["required_scopes"])
	}
	if res == nil || res.Meta == nil || res.Meta.AdditionalFields["decision_id"] != denied["decision_id"] {
		t.Errorf("the client's decision id %v is not the logged %v", res.Meta, denied["decision_id"])
	}
	if strings.Contains(g.decisions.String(), tok) {
		t.Error("the token is in the decision log")
	}
}

func TestDecisionLogHashesOrRedactsArguments(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	for _, tc := range []struct {
		mode, redact string
		check        func(line map[string]any) bool
	}{
		{"hash", "", func(l map[string]any) bool {
			h, _ := l["arguments_sha256"].(string)
			return len(h) == 64 && l["arguments"] == nil
		}},
		{"none", "", func(l map[string]any) bool { return l["arguments"] == nil && l["arguments_sha256"] == nil }},
		{"full", "a", func(l map[string]any) bool {
			args, _ := l["arguments"].(map[string]any)
			return args["a"] == "[redacted]" && args["b"] == 2.0
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) {
				c.DecisionLog.Arguments = tc.mode
				if tc.redact != "" {
					c.DecisionLog.Redact = []string{tc.redact}
				}
			})
			c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
			callTool(c, "add", map[string]any{"a": 1, "b": 2})
			for _, l := range g.decisionLines() {
				if l["action"] == "tools/call" && !tc.check(l) {
					t.Errorf("line = %v", l)
				}
			}
		})
	}
}

func TestDryRunHidesAndRefusesNothing(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) { c.Policy.DryRun = true })
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "image_generation", "whoami"}) {
		t.Errorf("dry-run tools/list = %v, want the whole catalog", got)
	}
	res, err := callTool(c, "image_generation", map[string]any{"prompt": "dry"})
	if err != nil || res.IsError {
		t.Fatalf("dry-run call refused: %v %v", err, text(res))
	}
	var list, call map[string]any
	for _, l := range g.decisionLines() {
		if l["action"] == "tools/list" {
			list = l
		}
		if l["action"] == "tools/call" {
			call = l
		}
	}
	if list["result"] != "dry_run_deny" || !slices.Equal(anyStrings(list["would_hide"]), []string{"image_generation"}) {
		t.Errorf("list line = %v", list)
	}
	if call["result"] != "dry_run_deny" || call["reason"] != `tool "image_generation" is not available` {
		t.Errorf("call line = %v", call)
	}
	text := g.scrape(g.URL + "/metrics")
	if !strings.Contains(text, `toolgate_policy_decisions_total{action="tools/call",reason="not_visible",result="dry_run_deny",tool="image_generation"} 1`) {
		t.Errorf("dry-run decision not counted:\n%s", grep(text, "toolgate_policy_decisions_total"))
	}
	if _, body := g.readyz(); body["policy_dry_run"] != true {
		t.Errorf("readyz does not say dry-run: %v", body)
	}
}

func find(t *testing.T, m map[string]map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key]
	if !ok {
		keys := []string{}
		for k := range m {
			keys = append(keys, k)
		}
		t.Fatalf("no decision %q among %v", key, keys)
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func grep(text, prefix string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// With a flush interval, lines wait to be written together, reach the
// output within the interval, and are all written at shutdown.
func TestDecisionLogBatchesLines(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g, stop := startStoppableGate(t, []*idptest.Tenant{tn}, func(c *config.Config, _ *server.Options) {
		c.DecisionLog.FlushInterval = 10 * time.Second // only shutdown or a full buffer writes, here
	})
	c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
	for i := range 3 {
		callTool(c, "add", map[string]any{"a": i, "b": 1})
	}
	if n := len(g.decisionLines()); n != 0 {
		t.Fatalf("%d lines written before the interval", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(g.decisionLines()); n != 3 {
		t.Errorf("%d lines after shutdown, want the 3 calls", n)
	}
}
