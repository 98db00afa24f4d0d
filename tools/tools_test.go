package tools

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
)

// call runs the named built-in tool's handler with args.
func call(t testing.TB, ctx context.Context, name string, args any) *mcp.CallToolResult {
	t.Helper()
	for _, st := range Builtin() {
		if st.Tool.Name != name {
			continue
		}
		var req mcp.CallToolRequest
		req.Params.Name = name
		req.Params.Arguments = args
		res, err := st.Handler(ctx, req)
		if err != nil {
			t.Fatalf("%s: handler returned a Go error: %v", name, err)
		}
		if res == nil {
			t.Fatalf("%s: handler returned a nil result", name)
		}
		return res
	}
	t.Fatalf("no built-in tool %q", name)
	return nil
}

func onlyText(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("got %d contents, want 1: %#v", len(res.Content), res.Content)
	}
	tc, ok := res.Content[0].(mcp.TextContent)
	if !ok {
		t.Fatalf("content is %T, want mcp.TextContent", res.Content[0])
	}
	return tc.Text
}

func TestAdd(t *testing.T) {
	tests := []struct {
		name    string
		args    any
		want    string
		wantErr string // substring of the isError text
	}{
		{name: "ints", args: map[string]any{"a": 2.0, "b": 3.0}, want: "5"},
		{name: "go ints", args: map[string]any{"a": 2, "b": int64(3)}, want: "5"},
		{name: "floats", args: map[string]any{"a": 1.25, "b": 1.25}, want: "2.5"},
		{name: "float rounding", args: map[string]any{"a": 0.1, "b": 0.2}, want: "0.30000000000000004"},
		{name: "negative", args: map[string]any{"a": -7.0, "b": 2.5}, want: "-4.5"},
		{name: "negative zero", args: map[string]any{"a": math.Copysign(0, -1), "b": math.Copysign(0, -1)}, want: "0"},
		{name: "large", args: map[string]any{"a": 1e20, "b": 1.0}, want: "100000000000000000000"},
		{name: "json number", args: map[string]any{"a": json.Number("4"), "b": json.Number("0.5")}, want: "4.5"},
		{name: "missing b", args: map[string]any{"a": 1.0}, wantErr: `"b"`},
		{name: "missing both", args: map[string]any{}, wantErr: `"a"`},
		{name: "no arguments", args: nil, wantErr: `"a"`},
		{name: "arguments not an object", args: []any{1.0, 2.0}, wantErr: `"a"`},
		{name: "null a", args: map[string]any{"a": nil, "b": 1.0}, wantErr: `"a"`},
		{name: "string a", args: map[string]any{"a": "1", "b": 2.0}, wantErr: `"a" must be a number`},
		{name: "bool b", args: map[string]any{"a": 1.0, "b": true}, wantErr: `"b" must be a number`},
		{name: "object b", args: map[string]any{"a": 1.0, "b": map[string]any{}}, wantErr: `"b" must be a number`},
		{name: "overflow", args: map[string]any{"a": 1.7e308, "b": 1.7e308}, wantErr: "not a finite number"},
		{name: "bad json number", args: map[string]any{"a": json.Number("x"), "b": 1.0}, wantErr: `"a" must be a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, t.Context(), NameAdd, tt.args)
			text := onlyText(t, res)
			if tt.wantErr != "" {
				if !res.IsError {
					t.Fatalf("got success %q, want an isError result", text)
				}
				if !strings.Contains(text, tt.wantErr) {
					t.Fatalf("error %q does not mention %q", text, tt.wantErr)
				}
				return
			}
			if res.IsError {
				t.Fatalf("got isError result %q", text)
			}
			if text != tt.want {
				t.Fatalf("got %q, want %q", text, tt.want)
			}
		})
	}
}

// imageOf checks that res is a successful image_generation result and returns
// its text and decoded PNG bytes.
func imageOf(t *testing.T, res *mcp.CallToolResult) (string, []byte) {
	t.Helper()
	if res.IsError {
		t.Fatalf("got isError result %#v", res.Content)
	}
	var (
		text string
		img  *mcp.ImageContent
	)
	for _, c := range res.Content {
		switch c := c.(type) {
		case mcp.TextContent:
			text = c.Text
		case mcp.ImageContent:
			img = &c
		default:
			t.Fatalf("unexpected content %T", c)
		}
	}
	if img == nil {
		t.Fatal("no image content")
	}
	if img.Type != "image" || img.MIMEType != "image/png" {
		t.Fatalf("image content type %q mimeType %q", img.Type, img.MIMEType)
	}
	data, err := base64.StdEncoding.DecodeString(img.Data)
	if err != nil {
		t.Fatalf("image data is not base64: %v", err)
	}
	decoded, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("image data is not a PNG: %v", err)
	}
	if b := decoded.Bounds(); b.Dx() != 256 || b.Dy() != 256 {
		t.Fatalf("image is %dx%d, want 256x256", b.Dx(), b.Dy())
	}
	return text, data
}

func TestImageGeneration(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes, 100 runes
	tests := []struct {
		name     string
		args     any
		wantText string
		wantErr  string
	}{
		{name: "simple", args: map[string]any{"prompt": "a red fox"}, wantText: `Generated a 256x256 PNG for "a red fox"`},
		{name: "one byte", args: map[string]any{"prompt": "x"}, wantText: `Generated a 256x256 PNG for "x"`},
		{name: "truncated echo", args: map[string]any{"prompt": long}, wantText: `Generated a 256x256 PNG for "` + strings.Repeat("é", 80) + `"`},
		{name: "max length", args: map[string]any{"prompt": strings.Repeat("a", MaxPromptBytes)}, wantText: `Generated a 256x256 PNG for "` + strings.Repeat("a", 80) + `"`},
		{name: "empty", args: map[string]any{"prompt": ""}, wantErr: "empty"},
		{name: "too long", args: map[string]any{"prompt": strings.Repeat("a", MaxPromptBytes+1)}, wantErr: "too long"},
		{name: "too long in bytes", args: map[string]any{"prompt": strings.Repeat("é", MaxPromptBytes/2+1)}, wantErr: "too long"},
		{name: "missing", args: map[string]any{}, wantErr: `"prompt"`},
		{name: "no arguments", args: nil, wantErr: `"prompt"`},
		{name: "not a string", args: map[string]any{"prompt": 42.0}, wantErr: "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, t.Context(), NameImageGeneration, tt.args)
			if tt.wantErr != "" {
				text := onlyText(t, res)
				if !res.IsError {
					t.Fatalf("got success, want an isError result")
				}
				if !strings.Contains(text, tt.wantErr) {
					t.Fatalf("error %q does not mention %q", text, tt.wantErr)
				}
				return
			}
			text, _ := imageOf(t, res)
			if text != tt.wantText {
				t.Fatalf("text %q, want %q", text, tt.wantText)
			}
		})
	}
}

func TestImageGenerationDeterministic(t *testing.T) {
	prompts := []string{"a red fox", "a red fox ", "A red fox", "sunset over the sea", "x", "y"}
	seen := map[string]string{}
	for _, p := range prompts {
		_, first := imageOf(t, call(t, t.Context(), NameImageGeneration, map[string]any{"prompt": p}))
		_, second := imageOf(t, call(t, t.Context(), NameImageGeneration, map[string]any{"prompt": p}))
		if !bytes.Equal(first, second) {
			t.Errorf("prompt %q: two calls gave different images", p)
		}
		if other, dup := seen[string(first)]; dup {
			t.Errorf("prompts %q and %q gave the same image", other, p)
		}
		seen[string(first)] = p
	}
}

// TestImageGenerationVaries checks that different prompts differ visibly, not
// only in a few bytes: most pixels change.
func TestImageGenerationVaries(t *testing.T) {
	a, b := render("a red fox"), render("a red fox!")
	differ := 0
	for y := range ImageSize {
		for x := range ImageSize {
			r1, g1, b1, _ := a.At(x, y).RGBA()
			r2, g2, b2, _ := b.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				differ++
			}
		}
	}
	if differ < ImageSize*ImageSize/2 {
		t.Fatalf("only %d of %d pixels differ", differ, ImageSize*ImageSize)
	}
}

func TestWhoami(t *testing.T) {
	full := &idp.Principal{
		Sub:         "user-1",
		Iss:         "https://issuer.example/",
		ClientID:    "client-9",
		Provider:    "auth0",
		OrgID:       "org_1",
		Scopes:      []string{"tools:add"},
		Permissions: []string{"read"},
		Roles:       []string{"admin"},
		Claims:      map[string]any{"sub": "user-1", "aud": []any{"toolgate"}, "exp": 1.7e9},
		Issuer:      "main",
	}
	tests := []struct {
		name      string
		principal *idp.Principal // nil: none in ctx
		wantErr   bool
	}{
		{name: "full", principal: full},
		{name: "anonymous", principal: idp.Anonymous()},
		{name: "no principal", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.principal != nil {
				ctx = idp.WithPrincipal(ctx, tt.principal)
			}
			res := call(t, ctx, NameWhoami, map[string]any{})
			text := onlyText(t, res)
			if tt.wantErr {
				if !res.IsError || text != "no principal" {
					t.Fatalf("got isError=%v %q, want isError result \"no principal\"", res.IsError, text)
				}
				return
			}
			if res.IsError {
				t.Fatalf("got isError result %q", text)
			}
			want, err := json.Marshal(tt.principal)
			if err != nil {
				t.Fatal(err)
			}
			if text != string(want) {
				t.Fatalf("got %s, want %s", text, want)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(text), &got); err != nil {
				t.Fatalf("not a JSON object: %v", err)
			}
			if _, ok := got["claims"]; !ok {
				t.Fatalf("no claims in %s", text)
			}
		})
	}
}

func TestWhoamiNilPrincipal(t *testing.T) {
	ctx := idp.WithPrincipal(t.Context(), nil)
	res := call(t, ctx, NameWhoami, nil)
	if !res.IsError {
		t.Fatalf("got success with a nil principal: %#v", res.Content)
	}
}

func TestBuiltin(t *testing.T) {
	tools := Builtin()
	var names []string
	byName := map[string]server.ServerTool{}
	for _, st := range tools {
		names = append(names, st.Tool.Name)
		byName[st.Tool.Name] = st
		if st.Handler == nil {
			t.Errorf("%s: no handler", st.Tool.Name)
		}
		if st.Tool.Description == "" {
			t.Errorf("%s: no description", st.Tool.Name)
		}
		if st.Tool.InputSchema.Type != "object" {
			t.Errorf("%s: input schema type %q", st.Tool.Name, st.Tool.InputSchema.Type)
		}
		if h := st.Tool.Annotations.DestructiveHint; h == nil || *h {
			t.Errorf("%s: destructiveHint %v, want false", st.Tool.Name, h)
		}
		if h := st.Tool.Annotations.OpenWorldHint; h == nil || *h {
			t.Errorf("%s: openWorldHint %v, want false", st.Tool.Name, h)
		}
	}
	slices.Sort(names)
	if want := []string{NameAdd, NameImageGeneration, NameWhoami}; !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	if NameAdd != "add" || NameImageGeneration != "image_generation" || NameWhoami != "whoami" {
		t.Fatal("tool names changed; they are part of the contract")
	}

	tests := []struct {
		name       string
		required   []string
		properties map[string]string // property -> JSON Schema type
		readOnly   bool
		idempotent bool
	}{
		{name: NameAdd, required: []string{"a", "b"}, properties: map[string]string{"a": "number", "b": "number"}, readOnly: true, idempotent: true},
		{name: NameImageGeneration, required: []string{"prompt"}, properties: map[string]string{"prompt": "string"}, readOnly: false, idempotent: true},
		{name: NameWhoami, required: nil, properties: map[string]string{}, readOnly: true, idempotent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tool := byName[tt.name].Tool
			// Check the schema as clients see it: the JSON of the tool.
			raw, err := json.Marshal(tool)
			if err != nil {
				t.Fatal(err)
			}
			var wire struct {
				InputSchema struct {
					Type       string                    `json:"type"`
					Required   []string                  `json:"required"`
					Properties map[string]map[string]any `json:"properties"`
				} `json:"inputSchema"`
				Annotations map[string]any `json:"annotations"`
			}
			if err := json.Unmarshal(raw, &wire); err != nil {
				t.Fatal(err)
			}
			if wire.InputSchema.Type != "object" {
				t.Errorf("inputSchema.type %q", wire.InputSchema.Type)
			}
			req := slices.Sorted(slices.Values(wire.InputSchema.Required))
			if !slices.Equal(req, tt.required) {
				t.Errorf("required %v, want %v", req, tt.required)
			}
			got := map[string]string{}
			for k, v := range wire.InputSchema.Properties {
				got[k], _ = v["type"].(string)
			}
			if !reflect.DeepEqual(got, tt.properties) {
				t.Errorf("properties %v, want %v", got, tt.properties)
			}
			if wire.Annotations["readOnlyHint"] != tt.readOnly {
				t.Errorf("readOnlyHint %v, want %v", wire.Annotations["readOnlyHint"], tt.readOnly)
			}
			if wire.Annotations["idempotentHint"] != tt.idempotent {
				t.Errorf("idempotentHint %v, want %v", wire.Annotations["idempotentHint"], tt.idempotent)
			}
			if wire.Annotations["openWorldHint"] != false {
				t.Errorf("openWorldHint %v, want false", wire.Annotations["openWorldHint"])
			}
			if tt.name == NameImageGeneration {
				p := wire.InputSchema.Properties["prompt"]
				if p["maxLength"] != float64(MaxPromptBytes) || p["minLength"] != 1.0 {
					t.Errorf("prompt schema %v, want minLength 1 and maxLength %d", p, MaxPromptBytes)
				}
			}
		})
	}
}

// TestServerWiring registers Builtin on a real mcp-go server and drives it
// with JSON-RPC messages, as a client would.
func TestServerWiring(t *testing.T) {
	for _, validate := range []bool{false, true} {
		name := "plain"
		opts := []server.ServerOption{server.WithToolCapabilities(false)}
		if validate {
			name = "input schema validation"
			opts = append(opts, server.WithInputSchemaValidation())
		}
		t.Run(name, func(t *testing.T) {
			s := server.NewMCPServer("toolgate-test", "0.0.0", opts...)
			s.AddTools(Builtin()...)
			ctx := idp.WithPrincipal(t.Context(), &idp.Principal{
				Sub: "u1", Scopes: []string{}, Permissions: []string{}, Roles: []string{},
				Claims: map[string]any{"sub": "u1"},
			})

			rpc := func(msg string) map[string]any {
				t.Helper()
				resp := s.HandleMessage(ctx, json.RawMessage(msg))
				raw, err := json.Marshal(resp)
				if err != nil {
					t.Fatal(err)
				}
				var out map[string]any
				if err := json.Unmarshal(raw, &out); err != nil {
					t.Fatal(err)
				}
				if out["error"] != nil {
					t.Fatalf("JSON-RPC error for %s: %s", msg, raw)
				}
				return out["result"].(map[string]any)
			}

			rpc(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)

			list := rpc(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
			var listed []string
			for _, tl := range list["tools"].([]any) {
				listed = append(listed, tl.(map[string]any)["name"].(string))
			}
			slices.Sort(listed)
			if !slices.Equal(listed, []string{"add", "image_generation", "whoami"}) {
				t.Fatalf("tools/list gave %v", listed)
			}

			res := rpc(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}`)
			if res["isError"] == true {
				t.Fatalf("add failed: %v", res)
			}
			content := res["content"].([]any)[0].(map[string]any)
			if content["type"] != "text" || content["text"] != "5" {
				t.Fatalf("add gave %v, want text 5", content)
			}

			res = rpc(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add","arguments":{"a":"2","b":3}}}`)
			if res["isError"] != true {
				t.Fatalf("add with a string argument succeeded: %v", res)
			}

			res = rpc(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
			text := res["content"].([]any)[0].(map[string]any)["text"].(string)
			var who map[string]any
			if err := json.Unmarshal([]byte(text), &who); err != nil || who["sub"] != "u1" {
				t.Fatalf("whoami gave %q (%v)", text, err)
			}

			res = rpc(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"image_generation","arguments":{"prompt":"a red fox"}}}`)
			var sawImage bool
			for _, c := range res["content"].([]any) {
				c := c.(map[string]any)
				if c["type"] != "image" {
					continue
				}
				sawImage = true
				data, err := base64.StdEncoding.DecodeString(c["data"].(string))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := png.Decode(bytes.NewReader(data)); err != nil || c["mimeType"] != "image/png" {
					t.Fatalf("image_generation: mimeType %v, decode error %v", c["mimeType"], err)
				}
			}
			if !sawImage {
				t.Fatalf("image_generation gave no image: %v", res)
			}
		})
	}
}

func BenchmarkImageGeneration(b *testing.B) {
	args := map[string]any{"prompt": "a lighthouse on a cliff at dusk, oil painting"}
	var size int
	for b.Loop() {
		res := call(b, context.Background(), NameImageGeneration, args)
		if res.IsError {
			b.Fatal("isError")
		}
		size = len(res.Content[1].(mcp.ImageContent).Data)
	}
	b.ReportMetric(float64(size), "b64bytes")
}

func BenchmarkRenderPNG(b *testing.B) {
	for b.Loop() {
		if _, err := renderPNG("a lighthouse on a cliff at dusk, oil painting"); err != nil {
			b.Fatal(err)
		}
	}
}
