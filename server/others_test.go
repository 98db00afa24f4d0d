package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// othersData grants everyone the greet prompt and the documents, and the
// permission "secret" the secret prompt, the secret resource and the items
// template.
const othersData = `{
  "tool_rules": {"add": {}, "whoami": {}},
  "prompt_rules": {"up_greet": {}, "up_secret": {"any_of": {"permissions": ["secret"]}}},
  "resource_rules": {
    "test://doc/": {},
    "test://secret/": {"any_of": {"permissions": ["secret"]}},
    "test://items/{id}": {"any_of": {"permissions": ["secret"]}}
  }
}`

func withOthers(url string) gateOption {
	return func(c *config.Config, o *server.Options) {
		withUpstreamServer(url)(c, o)
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(othersData), 0o644); err != nil {
			panic(err)
		}
	}
}

// rpcBody is the JSON-RPC answer in a response: a JSON body, or the last
// data line of an event stream.
func rpcBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return b
	}
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: ")); ok {
			last = bytes.Clone(d)
		}
	}
	return last
}

// resultOf is the raw result (or error) of a JSON-RPC answer.
func resultOf(t *testing.T, body []byte) (result, rpcErr json.RawMessage) {
	t.Helper()
	var m struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a JSON-RPC answer: %q", body)
	}
	return m.Result, m.Error
}

// direct asks the upstream itself, on a session of its own, and returns
// the raw result.
func direct(t *testing.T, url, method, params string) json.RawMessage {
	t.Helper()
	post := func(session, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	session := resp.Header.Get("Mcp-Session-Id")
	rpcBody(t, resp)
	res, rpcErr := resultOf(t, rpcBody(t, post(session, `{"jsonrpc":"2.0","id":2,"method":"`+method+`","params":`+params+`}`)))
	if rpcErr != nil {
		t.Fatalf("direct %s: %s", method, rpcErr)
	}
	return res
}

func promptNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListPrompts(context.Background(), mcp.ListPromptsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range res.Prompts {
		out = append(out, p.Name)
	}
	return sorted(out)
}

func resourceURIs(t *testing.T, c *client.Client) (uris, templates []string) {
	t.Helper()
	res, err := c.ListResources(context.Background(), mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		uris = append(uris, r.URI)
	}
	tres, err := c.ListResourceTemplates(context.Background(), mcp.ListResourceTemplatesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tres.ResourceTemplates {
		templates = append(templates, r.URITemplate.Raw())
	}
	return sorted(uris), sorted(templates)
}

// Two principals see and use exactly the prompts and resources the policy
// grants each; a hidden one answers as a missing one, and never reaches
// the upstream; what is allowed is the upstream's answer, byte for byte.
func TestGatewayServesPromptsAndResourcesBehindThePolicy(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL))
	aud := []string{g.Config.ResourceURL()}
	aliceTok := tn.Token(idptest.Claims{Sub: "alice", Audience: aud, Scopes: []string{"openid"}})
	bobTok := tn.Token(idptest.Claims{Sub: "bob", Audience: aud, Scopes: []string{"openid"}, Permissions: []string{"secret"}})
	alice, bob := g.connect(aliceTok), g.connect(bobTok)
	ctx := context.Background()

	if got := promptNames(t, alice); !slices.Equal(got, []string{"up_greet"}) {
		t.Errorf("alice's prompts: %v", got)
	}
	if got := promptNames(t, bob); !slices.Equal(got, []string{"up_greet", "up_secret"}) {
		t.Errorf("bob's prompts: %v", got)
	}
	uris, templates := resourceURIs(t, alice)
	if !slices.Equal(uris, []string{upstreamtest.LogoURI, upstreamtest.ReadmeURI}) || len(templates) != 0 {
		t.Errorf("alice's resources: %v, templates %v", uris, templates)
	}
	uris, templates = resourceURIs(t, bob)
	if !slices.Equal(uris, []string{upstreamtest.LogoURI, upstreamtest.ReadmeURI, upstreamtest.SecretURI}) || !slices.Equal(templates, []string{upstreamtest.ItemsURI}) {
		t.Errorf("bob's resources: %v, templates %v", uris, templates)
	}

	// Allowed: the upstream's bytes.
	session := alice.GetSessionId()
	for _, tc := range []struct{ method, gateParams, directParams string }{
		{"prompts/get", `{"name":"up_greet","arguments":{"name":"Ann"}}`, `{"name":"greet","arguments":{"name":"Ann"}}`},
		{"resources/read", `{"uri":"` + upstreamtest.ReadmeURI + `"}`, ""},
		{"resources/read", `{"uri":"` + upstreamtest.LogoURI + `"}`, ""},
		{"completion/complete", `{"ref":{"type":"ref/prompt","name":"up_greet"},"argument":{"name":"name","value":"Al"}}`,
			`{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"name","value":"Al"}}`},
	} {
		if tc.directParams == "" {
			tc.directParams = tc.gateParams
		}
		got, rpcErr := resultOf(t, rpcBody(t, g.rawPost(aliceTok, session, `{"jsonrpc":"2.0","id":7,"method":"`+tc.method+`","params":`+tc.gateParams+`}`)))
		want := direct(t, up.URL, tc.method, tc.directParams)
		if rpcErr != nil || !bytes.Equal(compact(t, got), compact(t, want)) {
			t.Errorf("%s %s through the gate: %s %s\ndirect: %s", tc.method, tc.gateParams, got, rpcErr, want)
		}
	}
	if res, err := bob.ReadResource(ctx, readRequest("test://items/5")); err != nil || len(res.Contents) != 1 ||
		res.Contents[0].(mcp.TextResourceContents).Text != "item 5" {
		t.Errorf("bob reads an item: %+v, %v", res, err)
	}

	// Hidden = missing: the same answer, but for the name.
	before := len(up.Requests())
	for _, tc := range []struct{ method, hidden, missing, hiddenName, missingName string }{
		{"prompts/get", `{"name":"up_secret"}`, `{"name":"up_nothing"}`, "up_secret", "up_nothing"},
		{"resources/read", `{"uri":"test://secret/key"}`, `{"uri":"test://nothing/key"}`, "secret", "nothing"},
		{"resources/read", `{"uri":"test://items/5"}`, `{"uri":"test://nothing/5"}`, "items", "nothing"},
		{"completion/complete", `{"ref":{"type":"ref/prompt","name":"up_secret"},"argument":{"name":"x","value":""}}`,
			`{"ref":{"type":"ref/prompt","name":"up_nothing"},"argument":{"name":"x","value":""}}`, "up_secret", "up_nothing"},
		{"completion/complete", `{"ref":{"type":"ref/resource","uri":"test://items/{id}"},"argument":{"name":"id","value":"1"}}`,
			`{"ref":{"type":"ref/resource","uri":"test://nothing/{id}"},"argument":{"name":"id","value":"1"}}`, "items", "nothing"},
	} {
		hiddenResp := g.rawPost(aliceTok, session, `{"jsonrpc":"2.0","id":8,"method":"`+tc.method+`","params":`+tc.hidden+`}`)
		missingResp := g.rawPost(aliceTok, session, `{"jsonrpc":"2.0","id":8,"method":"`+tc.method+`","params":`+tc.missing+`}`)
		if hiddenResp.StatusCode != missingResp.StatusCode || hiddenResp.Header.Get("Content-Type") != missingResp.Header.Get("Content-Type") {
			t.Errorf("%s: hidden %d %s, missing %d %s", tc.method, hiddenResp.StatusCode, hiddenResp.Header.Get("Content-Type"),
				missingResp.StatusCode, missingResp.Header.Get("Content-Type"))
		}
		hidden, missing := string(rpcBody(t, hiddenResp)), string(rpcBody(t, missingResp))
		if _, e := resultOf(t, []byte(hidden)); e == nil || strings.ReplaceAll(hidden, tc.hiddenName, "X") != strings.ReplaceAll(missing, tc.missingName, "X") {
			t.Errorf("%s hidden: %s\nmissing: %s", tc.method, hidden, missing)
		}
	}
	for _, r := range up.Requests()[before:] {
		if r.Method != "tools/list" && r.Method != "prompts/list" && !strings.HasPrefix(r.Method, "resources/") || r.Method == "resources/read" {
			t.Errorf("a hidden prompt or resource reached the upstream: %s %s", r.Method, r.Params)
		}
	}

	// Bob may: the same requests reach the upstream.
	if _, err := bob.GetPrompt(ctx, getPromptRequest("up_secret")); err != nil {
		t.Errorf("bob gets up_secret: %v", err)
	}
	if res, err := bob.ReadResource(ctx, readRequest(upstreamtest.SecretURI)); err != nil || res.Contents[0].(mcp.TextResourceContents).Text != "s3cr3t" {
		t.Errorf("bob reads the secret: %+v, %v", res, err)
	}

	// The decision log names the prompt and the resource; the metrics
	// label a resource by its upstream, never its URI.
	var sawPrompt, sawResource bool
	for _, l := range g.decisionLines() {
		switch l["action"] {
		case "prompts/get":
			sawPrompt = sawPrompt || l["prompt"] == "up_secret" && l["result"] == "allow" && l["server"] == "up"
		case "resources/read":
			sawResource = sawResource || l["resource"] == upstreamtest.SecretURI && l["result"] == "deny" && l["reason_code"] == "not_visible"
		}
	}
	if !sawPrompt || !sawResource {
		t.Errorf("decision log: prompt %v, resource %v:\n%v", sawPrompt, sawResource, g.decisionLines())
	}
	metrics := g.scrape(g.URL + "/metrics")
	if strings.Contains(metrics, "test://") || !strings.Contains(metrics, `action="resources/read",reason="not_visible",result="deny",tool="up"`) ||
		!strings.Contains(metrics, `action="prompts/get",reason="allowed",result="allow",tool="up_secret"`) {
		t.Errorf("metrics:\n%s", grepLines(metrics, "toolgate_policy_decisions_total"))
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("%v: %q", err, b)
	}
	return out.Bytes()
}

func grepLines(s, what string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func readRequest(uri string) mcp.ReadResourceRequest {
	var r mcp.ReadResourceRequest
	r.Params.URI = uri
	return r
}

func getPromptRequest(name string) mcp.GetPromptRequest {
	var r mcp.GetPromptRequest
	r.Params.Name = name
	return r
}

// A prompt or resource the policy shows but refuses is answered
// "Permission denied" with the reason and the decision id, and nothing
// reaches the upstream: the get, the read and the completion.
func TestVisibleButRefusedPromptsAndResources(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) {
		held := `package mcp.authz

visible_prompts contains "up_greet"

visible_resources contains "` + upstreamtest.ReadmeURI + `"

reason := "held for review" if input.action in {"prompts/get", "resources/read", "completion/complete"}
`
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "prompts_resources.rego"), []byte(held), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	tok := tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g.Config.ResourceURL()}})
	alice := g.connect(tok)
	if got := promptNames(t, alice); !slices.Equal(got, []string{"up_greet"}) {
		t.Fatalf("alice's prompts: %v", got)
	}
	if uris, _ := resourceURIs(t, alice); !slices.Equal(uris, []string{upstreamtest.ReadmeURI}) {
		t.Fatalf("alice's resources: %v", uris)
	}
	before := len(up.Requests())
	for _, tc := range []struct{ method, params string }{
		{"prompts/get", `{"name":"up_greet","arguments":{"name":"Ann"}}`},
		{"resources/read", `{"uri":"` + upstreamtest.ReadmeURI + `"}`},
		{"completion/complete", `{"ref":{"type":"ref/prompt","name":"up_greet"},"argument":{"name":"name","value":"Al"}}`},
	} {
		_, rpcErr := resultOf(t, rpcBody(t, g.rawPost(tok, alice.GetSessionId(), `{"jsonrpc":"2.0","id":7,"method":"`+tc.method+`","params":`+tc.params+`}`)))
		if !strings.Contains(string(rpcErr), "Permission denied: held for review (decision ") {
			t.Errorf("%s: %s, want Permission denied: held for review", tc.method, rpcErr)
		}
	}
	for _, r := range up.Requests()[before:] {
		t.Errorf("a refused request reached the upstream: %s %s", r.Method, r.Params)
	}
}

// Dry-run hides nothing of the upstreams' prompts and resources either:
// every prompt, resource and template is listed, the lines say what would
// have been hidden (prompt names; URIs only counted), and a hidden one can
// be got and read.
func TestDryRunListsEveryPromptAndResource(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) { c.Policy.DryRun = true })
	tok := tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g.Config.ResourceURL()}})
	alice := g.connect(tok)
	if got := promptNames(t, alice); !slices.Contains(got, "up_secret") || !slices.Contains(got, "up_greet") {
		t.Errorf("dry-run prompts: %v, want every one", got)
	}
	uris, templates := resourceURIs(t, alice)
	if !slices.Contains(uris, upstreamtest.SecretURI) || !slices.Contains(templates, upstreamtest.ItemsURI) {
		t.Errorf("dry-run resources: %v, templates %v, want every one", uris, templates)
	}
	if res, err := alice.ReadResource(context.Background(), readRequest(upstreamtest.SecretURI)); err != nil || len(res.Contents) != 1 {
		t.Errorf("dry-run read of a hidden resource: %+v, %v", res, err)
	}
	var prompts, resources map[string]any
	for _, l := range g.decisionLines() {
		switch l["action"] {
		case "prompts/list":
			prompts = l
		case "resources/list":
			resources = l
		}
	}
	if prompts["result"] != "dry_run_deny" || !slices.Equal(anyStrings(prompts["would_hide"]), []string{"up_secret"}) ||
		!slices.Contains(anyStrings(prompts["visible_prompts"]), "up_secret") {
		t.Errorf("prompts/list line = %v", prompts)
	}
	if resources["result"] != "dry_run_deny" || resources["would_hide"] != nil || resources["visible_resources"] != nil {
		t.Errorf("resources/list line = %v", resources)
	}
}
