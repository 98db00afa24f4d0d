// Package tools holds the built-in MCP tools that toolgate serves itself:
// add, image_generation and whoami. Their names, arguments and results are
// part of the contract that users rely on; see Builtin.
package tools

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strconv"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
)

// Names of the built-in tools.
const (
	NameAdd             = "add"
	NameImageGeneration = "image_generation"
	NameWhoami          = "whoami"
)

// Builtin returns the built-in tools, ready for (*server.MCPServer).AddTools.
// Each call returns fresh values, so callers may modify them.
//
// Handlers report bad arguments as tool results with isError set, never as Go
// errors.
func Builtin() []server.ServerTool {
	return []server.ServerTool{
		{Tool: addTool(), Handler: handleAdd},
		{Tool: imageGenerationTool(), Handler: handleImageGeneration},
		{Tool: whoamiTool(), Handler: handleWhoami},
	}
}

func annotations(title string, readOnly, idempotent bool) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{
		Title:           title,
		ReadOnlyHint:    mcp.ToBoolPtr(readOnly),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(idempotent),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}
}

// ---- add -------------------------------------------------------------------

func addTool() mcp.Tool {
	return mcp.NewTool(NameAdd,
		mcp.WithDescription("Add two numbers and return their sum as text "+
			"(for example 5 or 2.5). Both a and b are required JSON numbers."),
		mcp.WithNumber("a", mcp.Required(), mcp.Description("The first addend.")),
		mcp.WithNumber("b", mcp.Required(), mcp.Description("The second addend.")),
		mcp.WithToolAnnotation(annotations("Add two numbers", true, true)),
	)
}

func handleAdd(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args := req.GetArguments()
	a, msg := numberArg(args, "a")
	if msg != "" {
		return mcp.NewToolResultError(msg), nil
	}
	b, msg := numberArg(args, "b")
	if msg != "" {
		return mcp.NewToolResultError(msg), nil
	}
	sum := a + b
	if math.IsNaN(sum) || math.IsInf(sum, 0) {
		return mcp.NewToolResultError("the sum is not a finite number"), nil
	}
	if sum == 0 {
		sum = 0 // print -0 as 0
	}
	return mcp.NewToolResultText(strconv.FormatFloat(sum, 'f', -1, 64)), nil
}

// numberArg returns the finite number args[key], or a message for the caller.
// Unlike CallToolRequest.RequireFloat it does not accept numeric strings: the
// schema says number.
func numberArg(args map[string]any, key string) (float64, string) {
	v, ok := args[key]
	if !ok || v == nil {
		return 0, "missing required argument " + strconv.Quote(key)
	}
	var f float64
	notNumber := "argument " + strconv.Quote(key) + " must be a number"
	if n, ok := v.(json.Number); ok {
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, notNumber
		}
	} else {
		// JSON gives float64; callers in Go may pass any numeric kind.
		switch rv := reflect.ValueOf(v); rv.Kind() {
		case reflect.Float32, reflect.Float64:
			f = rv.Float()
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			f = float64(rv.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f = float64(rv.Uint())
		default:
			return 0, notNumber
		}
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, "argument " + strconv.Quote(key) + " must be a finite number"
	}
	return f, ""
}

// ---- whoami ----------------------------------------------------------------

func whoamiTool() mcp.Tool {
	return mcp.NewTool(NameWhoami,
		mcp.WithDescription("Return the caller's identity as seen by toolgate: a JSON "+
			"object with sub, iss, client_id, provider, org_id, scopes, permissions, "+
			"roles and the token's claims. Takes no arguments; never returns the token itself."),
		mcp.WithToolAnnotation(annotations("Who am I", true, true)),
	)
}

func handleWhoami(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	p, ok := idp.PrincipalFrom(ctx)
	if !ok {
		return mcp.NewToolResultError("no principal"), nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return mcp.NewToolResultError("cannot encode the principal"), nil
	}
	return mcp.NewToolResultText(string(b)), nil
}
