package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	os.WriteFile(path, []byte("listen: 127.0.0.1:0\nlisen: x\nanonymous: true\nissuers:\n  - provider: okta\n    issuer: https://i.example\n"), 0o644)
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--config", path}, &out, &errs); code == 0 {
		t.Fatal("want a non-zero exit")
	}
	for _, want := range []string{"field lisen not found", `"okta" is not one of`} {
		if !strings.Contains(errs.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs.String())
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(errs.String()), "\n") {
		if !strings.HasPrefix(line, "toolgate: ") {
			t.Errorf("line %q does not start with toolgate:", line)
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
