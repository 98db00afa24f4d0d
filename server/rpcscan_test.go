package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

var scanSeeds = []string{
	`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}`,
	`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
	` { "method" : "tools/call" , "params" : { "arguments" : [1, {"x": "}"}] , "name" : "n" } } `,
	`{"METHOD":"tools/call","Params":{"NAME":"x","Arguments":"str\"ing"}}`,
	`{"method":"tools/list","method":"tools/call","params":{"name":"a"},"params":{"arguments":{"p":"q"}}}`,
	`{"method":"tools/call","params":null}`,
	`{"method":"tools/call","params":{"name":"a","arguments":null}}`,
	`{"method":"tools\/call","params":{"name":"a"}}`,
	`{"méthod":"tools/call"}`,
	`{"paramſ":{"name":"a"}}`,
	`{"method":"tools/call","params":{"name":"a","arguments":{"deep":[[[[{"k":"v\\"}"}]]]]}}}`,
	`[{"method":"tools/call"}]`,
	`{"method":1}`,
	`{"method":"a"`,
	`{"id":-1.5e3,"method":"ping","params":{"x":true,"y":false,"z":null}}`,
	`{}`,
	``,
}

// When the scanner answers JSON, it answers what encoding/json would, and
// the depth jsonDepth would; and what mcp-go reads of the same body (the
// method as its transport does, a call's name and arguments as its tool
// handler does), it reads as the gate did.
func checkScan(t *testing.T, body []byte) {
	got, depth, ok := scanRequest(body)
	if !ok {
		return
	}
	var want rpcRequest
	if err := json.Unmarshal(body, &want); err != nil {
		// Not JSON: the scanner may answer; mcp-go refuses the request.
		return
	}
	if want := jsonDepth(body); depth != want {
		t.Errorf("%q: scan depth %d, jsonDepth %d", body, depth, want)
	}
	if got.Method != want.Method || got.Params.Name != want.Params.Name ||
		!bytes.Equal(bytes.TrimSpace(got.Params.Arguments), bytes.TrimSpace(want.Params.Arguments)) ||
		!bytes.Equal(bytes.TrimSpace(got.ID), bytes.TrimSpace(want.ID)) {
		t.Errorf("%q:\nscan %q %q %q %q\njson %q %q %q %q", body, got.ID, got.Method, got.Params.Name, got.Params.Arguments,
			want.ID, want.Method, want.Params.Name, want.Params.Arguments)
	}
	var msg struct {
		Method mcp.MCPMethod `json:"method"`
	}
	if json.Unmarshal(body, &msg) == nil && string(msg.Method) != got.Method {
		t.Errorf("%q: mcp-go reads method %q, the gate %q", body, msg.Method, got.Method)
	}
	var call mcp.CallToolRequest
	if got.Method != string(mcp.MethodToolsCall) || json.Unmarshal(body, &call) != nil {
		return
	}
	var args any
	if len(bytes.TrimSpace(got.Params.Arguments)) > 0 {
		_ = json.Unmarshal(got.Params.Arguments, &args)
	}
	// mcp-go decodes each "params" afresh (a repeated or null params resets
	// the name), encoding/json merges them: the names may differ, and then
	// the gate's decision is not used (decisionFor and filterTools match it
	// by name, and decide again). A decision that is used must have been
	// made on the arguments the tool gets.
	if call.Params.Name == got.Params.Name && !reflect.DeepEqual(args, call.Params.Arguments) {
		t.Errorf("%q: mcp-go calls %q with %v, the gate decided it with %v", body, call.Params.Name, call.Params.Arguments, args)
	}
}

func TestScanRequestAgreesWithEncodingJSON(t *testing.T) {
	answered := 0
	for _, s := range scanSeeds {
		if _, _, ok := scanRequest([]byte(s)); ok {
			answered++
		}
		checkScan(t, []byte(s))
	}
	if answered < 6 {
		t.Errorf("the scanner answered only %d of the seeds", answered)
	}
	for _, s := range []string{`{"method":"tools\/call"}`, `{"méthod":"x"}`, `{"paramſ":{}}`} {
		if _, _, ok := scanRequest([]byte(s)); ok {
			t.Errorf("%s: must fall back to encoding/json", s)
		}
	}
}

func FuzzScanRequest(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScan)
}

func BenchmarkScanRequest(b *testing.B) {
	body := []byte(scanSeeds[0])
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			scanRequest(body)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var r rpcRequest
			json.Unmarshal(body, &r)
		}
	})
}
