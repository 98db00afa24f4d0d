package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// The development default: `toolgate token` mints what `toolgate serve`
// without a config accepts, and the default policy filters tools/list.
func TestDevServeAcceptsDevToken(t *testing.T) {
	t.Setenv("TOOLGATE_DEV_KEY", filepath.Join(t.TempDir(), "dev.pem"))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, []string{"--listen", "127.0.0.1:0"}, io.Discard, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base := "http://" + addr

	var out, errs bytes.Buffer
	if code := run(ctx, []string{"token", "--url", base, "--sub", "dev-alice"}, &out, &errs); code != 0 {
		t.Fatalf("token: %d %s", code, errs.String())
	}
	tok := strings.TrimSpace(out.String())

	post := func(token, session, body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		req.Header.Set("Authorization", "Bearer "+token)
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, _ := post(tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize: %d", resp.StatusCode)
	}
	session := resp.Header.Get("Mcp-Session-Id")
	_, list := post(tok, session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if !strings.Contains(list, `"name":"add"`) || !strings.Contains(list, `"name":"whoami"`) || strings.Contains(list, `"name":"image_generation"`) {
		t.Errorf("tools/list for a principal without permissions: %s", list)
	}
	if resp, _ := post("x"+tok, "", `{}`); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a forged token: %d", resp.StatusCode)
	}
}

func TestServeReportsEveryConfigProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toolgate.yaml")
	os.WriteFile(path, []byte(`listen: 127.0.0.1:0
lisen: x
anonymous: true
issuers:
  - provider: okta
    issuer: https://i.example
    jwks_url: http://evil.example/jwks
    provider: oidc
`), 0o644)
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--config", path}, &out, &errs); code == 0 {
		t.Fatal("want a non-zero exit")
	}
	want := []string{
		"toolgate: " + path + ":",
		"toolgate: line 2: lisen: unknown key",
		"toolgate: line 8: issuers[0].provider: given twice (first at line 5)",
		`toolgate: issuers[0].provider: "okta" is not one of`,
		`toolgate: issuers[0].jwks_url: "http://evil.example/jwks" uses http://`,
	}
	lines := strings.Split(strings.TrimSpace(errs.String()), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d lines on stderr, want the file and one per problem (%d):\n%s", len(lines), len(want), errs.String())
	}
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("no stderr line starts with %q:\n%s", w, errs.String())
		}
	}
}

func TestServeRefusesAPolicyThatDoesNotCompile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package mcp.authz\n\nallow if {\n"), 0o644)
	path := filepath.Join(dir, "toolgate.yaml")
	os.WriteFile(path, []byte("listen: 127.0.0.1:0\nanonymous: true\npolicy:\n  dir: "+dir+"\n"), 0o644)
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--config", path}, &out, &errs); code == 0 {
		t.Fatal("want a non-zero exit")
	}
	if !strings.Contains(errs.String(), "p.rego:") {
		t.Errorf("stderr does not name the file and line:\n%s", errs.String())
	}
}

func TestPolicyTestRunsTheRegoTests(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"policy", "test", "../../rego"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "PASS:") {
		t.Errorf("output: %s", out.String())
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p_test.rego"), []byte("package mcp.authz_test\n\ntest_fails if { 1 == 2 }\n"), 0o644)
	out.Reset()
	if code := run(context.Background(), []string{"policy", "test", dir}, &out, &errs); code == 0 {
		t.Errorf("a failing test exited 0: %s", out.String())
	}
	if !strings.Contains(out.String(), "FAIL") {
		t.Errorf("output: %s", out.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), "usage:") {
		t.Errorf("unknown command: %d %q", code, errs.String())
	}
	if code := run(context.Background(), []string{"token", "--ttl", "-1h"}, &out, &errs); code == 0 {
		t.Error("a negative ttl was accepted")
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func defaultPolicyText(t *testing.T) string {
	b, err := os.ReadFile("../../rego/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPolicyCheck(t *testing.T) {
	cases := []struct {
		name     string
		files    map[string]string
		exit     int
		want     []string
		unwanted []string
	}{
		{"the default policy is clean", nil, 0, []string{"ok (0 warning(s))"}, []string{"error"}},
		{"a typo in an input field is an error at its line", map[string]string{
			"policy.rego": defaultPolicyText(t),
			"data.json":   `{"tool_rules": {"add": {}, "whoami": {}, "image_generation": {}}}`,
			"typo.rego":   "package mcp.authz\n\nextra if {\n\t\"x\" in input.principal.permision\n}\n",
		}, 1, []string{"typo.rego:4: error: rego_type_error: undefined ref: input.principal.permision", `want (one of)`}, nil},
		{"a tool the catalog lacks is an error at its line in data", map[string]string{
			"policy.rego": defaultPolicyText(t),
			"data.json":   "{\n  \"tool_rules\": {\n    \"add\": {},\n    \"image_gen\": {}\n  }\n}\n",
		}, 1, []string{`data.json:4: error: tool_rules names "image_gen", which is not a tool of the catalog`}, nil},
		{"a catalog tool no rule can show is a warning", map[string]string{
			"policy.rego": defaultPolicyText(t),
			"data.json":   `{"tool_rules": {"add": {}, "whoami": {"any_of": {"roles": ["auditor"]}}}}`,
		}, 0, []string{`warning: no rule makes tool "image_generation" visible`, "ok (1 warning(s))"}, []string{`tool "whoami"`}},
		{"visible_tools that is not a set of strings is an error", map[string]string{
			"p.rego": "package mcp.authz\n\nvisible_tools := [\"add\"]\n",
		}, 1, []string{"p.rego:3: error: rego_type_error: visible_tools must be a set of strings"}, nil},
		{"strict mode: an unused variable is an error", map[string]string{
			"p.rego": "package mcp.authz\n\nvisible_tools := {\"add\"}\n\nallow if {\n\tx := 1\n\ttrue\n}\n",
		}, 1, []string{"p.rego:6: error: rego_compile_error: assigned var x unused"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := "../../rego"
			if tc.files != nil {
				dir = writeFiles(t, tc.files)
			}
			var out, errs bytes.Buffer
			code := run(context.Background(), []string{"policy", "check", dir}, &out, &errs)
			if (code == 0) != (tc.exit == 0) {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.exit, out.String(), errs.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, u := range tc.unwanted {
				if strings.Contains(out.String(), u) {
					t.Errorf("output has %q:\n%s", u, out.String())
				}
			}
		})
	}
}

// With --config, data.server_rules must name the configured upstreams (a
// typo would leave that upstream's tools without their rule), and a
// tool_rules name the built-in catalog lacks is only a warning: it may be
// an upstream's tool. The configuration's policy.dir is checked when no
// directory is given. No upstream is contacted.
func TestPolicyCheckWithConfig(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"policy.rego": defaultPolicyText(t),
		"data.json":   "{\n  \"tool_rules\": {\"add\": {}, \"whoami\": {}, \"image_generation\": {}, \"fs_read\": {}},\n  \"server_rules\": {\n    \"fs\": {},\n    \"fss\": {}\n  }\n}\n",
	})
	cfg := filepath.Join(t.TempDir(), "toolgate.yaml")
	if err := os.WriteFile(cfg, []byte("anonymous: true\npolicy:\n  dir: "+dir+"\nupstreams:\n  - name: fs\n    url: http://127.0.0.1:1/mcp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"policy", "check", "--config", cfg}, &out, &errs)
	if code != 1 || !strings.Contains(out.String(), `data.json:5: error: server_rules names "fss", which is not a configured upstream (fs)`) ||
		strings.Contains(out.String(), `"fs",`) || !strings.Contains(out.String(), `warning: tool_rules names "fs_read"`) {
		t.Errorf("exit %d, want 1; output:\n%s%s", code, out.String(), errs.String())
	}
	// Without --config nothing is known of upstreams: fs_read is an error,
	// the server_rules keys are not linted.
	out.Reset()
	run(context.Background(), []string{"policy", "check", dir}, &out, &errs)
	if !strings.Contains(out.String(), `error: tool_rules names "fs_read"`) || strings.Contains(out.String(), "server_rules names") {
		t.Errorf("without --config:\n%s", out.String())
	}
}

func TestPolicyExplain(t *testing.T) {
	t.Setenv("TOOLGATE_DEV_KEY", filepath.Join(t.TempDir(), "dev.pem"))
	claims := writeFiles(t, map[string]string{"c.json": `{"iss": "https://t.stytch.dev", "sub": "member-1", "scope": "images:write",
		"https://stytch.com/session": {"roles": ["image-creator"]}, "https://stytch.com/organization": {"organization_id": "org-1"}}`})
	explain := func(args ...string) (int, map[string]any, string) {
		var out, errs bytes.Buffer
		code := run(context.Background(), append([]string{"policy", "explain", "--dir", "../../rego"}, args...), &out, &errs)
		var doc map[string]any
		json.Unmarshal(out.Bytes(), &doc)
		return code, doc, out.String() + errs.String()
	}
	t.Run("claims", func(t *testing.T) {
		code, doc, text := explain("--claims", filepath.Join(claims, "c.json"), "--provider", "stytch", "--tool", "image_generation", "--args", `{"prompt": "hi"}`)
		if code != 0 {
			t.Fatal(text)
		}
		p := doc["principal"].(map[string]any)
		if p["org_id"] != "org-1" || fmt.Sprint(p["roles"]) != "[image-creator]" {
			t.Errorf("principal = %v", p)
		}
		if fmt.Sprint(doc["visible_tools"]) != "[add image_generation whoami]" {
			t.Errorf("visible_tools = %v", doc["visible_tools"])
		}
		if d := doc["decision"].(map[string]any); d["allowed"] != true || d["reason_code"] != "allowed" || d["answer"] != outcome.Of(outcome.Allowed).Answer {
			t.Errorf("decision = %v", d)
		}
	})
	t.Run("step-up and denial", func(t *testing.T) {
		_, doc, _ := explain("--claims", filepath.Join(claims, "c.json"), "--provider", "stytch", "--tool", "image_generation", "--args", `{"prompt": "`+strings.Repeat("x", 1001)+`"}`)
		if d := doc["decision"].(map[string]any); d["reason_code"] != "policy_denied" || !strings.HasPrefix(d["reason"].(string), "argument") || d["answer"] != outcome.Of(outcome.PolicyDenied).Answer {
			t.Errorf("decision = %v", d)
		}
	})
	t.Run("token", func(t *testing.T) {
		var out, errs bytes.Buffer
		run(context.Background(), []string{"token", "--sub", "eve"}, &out, &errs)
		tok := strings.TrimSpace(out.String())
		code, doc, text := explain("--token", tok, "--tool", "image_generation")
		if code != 0 {
			t.Fatal(text)
		}
		if d := doc["decision"].(map[string]any); d["reason_code"] != "not_visible" || !strings.Contains(d["answer"].(string), "not found") {
			t.Errorf("decision = %v", d)
		}
		code, _, text = explain("--token", tok[:len(tok)-4]+"AAAA")
		if code == 0 || !strings.Contains(text, "401") || !strings.Contains(text, "signature_invalid") {
			t.Errorf("a bad signature: %d %s", code, text)
		}
	})
	t.Run("trace", func(t *testing.T) {
		_, _, text := explain("--claims", filepath.Join(claims, "c.json"), "--tool", "add", "--trace")
		if !strings.Contains(text, "trace:") || !strings.Contains(text, "policy.rego:") {
			t.Errorf("no trace in:\n%s", text)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if code, _, _ := explain("--tool", "add"); code == 0 {
			t.Error("neither --token nor --claims was accepted")
		}
	})
}

// `policy explain --config` with upstreams connects to them as `serve` does
// and explains over the gateway's catalog: an upstream tool the policy
// grants is visible and allowed, its decision naming its server; an
// upstream that is down is named on stderr and its tools are absent.
func TestPolicyExplainUpstreamTools(t *testing.T) {
	rules, err := os.ReadFile("../../rego/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeFiles(t, map[string]string{
		"policy.rego": string(rules),
		"data.json":   `{"tool_rules": {"add": {}, "whoami": {}, "up_echo": {}}}`,
	})
	claims := filepath.Join(writeFiles(t, map[string]string{"c.json": `{"iss": "https://idp.example", "sub": "u1"}`}), "c.json")
	up := upstreamtest.Start(t)
	explain := func(t *testing.T, url, tool string) (map[string]any, string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "toolgate.yaml")
		cfg := fmt.Sprintf("anonymous: true\nupstreams:\n  - name: up\n    url: %s\n    timeout: 2s\n", url)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errs bytes.Buffer
		args := []string{"policy", "explain", "--config", path, "--dir", dir, "--claims", claims, "--tool", tool}
		if code := run(context.Background(), args, &out, &errs); code != 0 {
			t.Fatalf("exit %d: %s%s", code, out.String(), errs.String())
		}
		var doc map[string]any
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("%v in:\n%s", err, out.String())
		}
		return doc, errs.String()
	}
	t.Run("up", func(t *testing.T) {
		doc, errs := explain(t, up.URL, "up_echo")
		if fmt.Sprint(doc["visible_tools"]) != "[add up_echo whoami]" {
			t.Errorf("visible_tools = %v; stderr %q", doc["visible_tools"], errs)
		}
		if d := doc["decision"].(map[string]any); d["visible"] != true || d["allowed"] != true || d["server"] != "up" {
			t.Errorf("decision = %v", d)
		}
		if doc, _ := explain(t, up.URL, "add"); doc["decision"].(map[string]any)["server"] != "builtin" {
			t.Errorf("decision of a built-in tool = %v", doc["decision"])
		}
	})
	t.Run("down", func(t *testing.T) {
		dead := upstreamtest.Start(t)
		dead.Close()
		doc, errs := explain(t, dead.URL, "up_echo")
		if !strings.HasPrefix(errs, `policy explain: upstream "up" is down, its tools are absent: `) || strings.Count(errs, "\n") != 1 {
			t.Errorf("stderr = %q; want one line naming the upstream down", errs)
		}
		if fmt.Sprint(doc["visible_tools"]) != "[add whoami]" {
			t.Errorf("visible_tools = %v", doc["visible_tools"])
		}
		if d := doc["decision"].(map[string]any); d["visible"] != false || d["reason_code"] != "not_visible" || d["server"] != nil {
			t.Errorf("decision = %v", d)
		}
	})
}

func TestPolicyTestCoverage(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"policy", "test", "--coverage", "../../rego"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var report struct {
		Coverage float64 `json:"coverage"`
	}
	if err := json.Unmarshal(out.Bytes(), &report); err != nil || report.Coverage < 90 {
		t.Errorf("coverage report: %v %v", report.Coverage, err)
	}
}

// `toolgate upstream list` connects to each configured upstream as `serve`
// would and prints its state and its tools as a client sees them: prefixed,
// without the names it drops (here a built-in tool's, taken by the prefix
// ""); an upstream that is down is named with its error, and the exit
// status says so.
func TestUpstreamList(t *testing.T) {
	up := upstreamtest.Start(t, json.RawMessage(`{"name":"add","inputSchema":{"type":"object"}}`))
	dead := upstreamtest.Start(t)
	dead.Close()
	path := filepath.Join(t.TempDir(), "toolgate.yaml")
	cfg := fmt.Sprintf(`anonymous: true
upstreams:
  - name: tests
    url: %s
    prefix: ""
  - name: gone
    url: %s
    timeout: 2s
`, up.URL, dead.URL)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"upstream", "list", "--config", path}, &out, &errs)
	if code != 1 || !strings.Contains(errs.String(), "1 of 2 upstreams down") {
		t.Errorf("exit %d, stderr %q; want 1 and the upstreams down counted", code, errs.String())
	}
	want := "tests: up, 6 tools\n  big\n  echo\n  env\n  progress\n  session\n  slow\ngone: down: "
	if got := out.String(); !strings.HasPrefix(got, want) || strings.Count(got, "\n") != 8 {
		t.Errorf("output:\n%s\nwant it to start with:\n%s", got, want)
	}

	// All up: exit 0.
	cfg = fmt.Sprintf("anonymous: true\nupstreams:\n  - name: tests\n    url: %s\n", up.URL)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(context.Background(), []string{"upstream", "list", "--config", path}, &out, &errs); code != 0 ||
		!strings.Contains(out.String(), "  tests_add\n") || !strings.Contains(out.String(), "tests: up, 7 tools\n") {
		t.Errorf("exit %d, output:\n%s", code, out.String())
	}
}

// `upstream lock` writes the lock file beside the configuration; `upstream
// diff` is quiet and exits 0 while the upstream matches it, and shows the
// change and exits 1 once a description changes; `upstream list` of a pinned
// upstream without a lock file fails, naming the command that writes it.
func TestUpstreamLockAndDiff(t *testing.T) {
	up := upstreamtest.Start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "toolgate.yaml")
	cfg := fmt.Sprintf("anonymous: true\nupstreams:\n  - name: tests\n    url: %s\n    pin: true\n", up.URL)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"upstream", "list", "--config", path}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "toolgate upstream lock") {
		t.Errorf("list without a lock file: exit %d, stderr %q", code, errs.String())
	}
	out.Reset()
	errs.Reset()
	if code := run(context.Background(), []string{"upstream", "lock", "--config", path}, &out, &errs); code != 0 {
		t.Fatalf("lock: exit %d, stderr %q", code, errs.String())
	}
	lock := filepath.Join(dir, "toolgate.lock")
	if _, err := os.Stat(lock); err != nil || !strings.Contains(out.String(), "6 tools of 1 upstreams locked") {
		t.Fatalf("lock: %v; stdout %q", err, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"upstream", "diff", "--config", path}, &out, &errs); code != 0 || out.Len() != 0 {
		t.Errorf("diff with nothing changed: exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
	}
	up.Describe("echo", "Echoes text, and more.")
	if code := run(context.Background(), []string{"upstream", "diff", "--config", path}, &out, &errs); code != 1 ||
		!strings.Contains(out.String(), "changed tests: echo\n--- a/tests/echo\n+++ b/tests/echo\n") ||
		!strings.Contains(out.String(), "\n-  \"description\": \"Echoes text.\",\n+  \"description\": \"Echoes text, and more.\",\n") ||
		!strings.Contains(errs.String(), "1 tools differ") {
		t.Errorf("diff after a change: exit %d, stdout:\n%s\nstderr %q", code, out.String(), errs.String())
	}
}
