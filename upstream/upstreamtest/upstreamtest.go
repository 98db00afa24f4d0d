// Package upstreamtest is a small MCP server of the project's own, on
// mcp-go, for tests of the gateway: it serves a few tools over Streamable
// HTTP on 127.0.0.1 (or over stdio) and records every request it gets, with
// its headers, so a test can prove what did and did not reach an upstream.
package upstreamtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// Request is one HTTP request the upstream got.
type Request struct {
	Header http.Header
	// Method is the JSON-RPC method ("" for a GET or a batch).
	Method string
}

// Server is a running upstream.
type Server struct {
	URL string // its MCP endpoint
	srv *httptest.Server
	mcp *mcpserver.MCPServer

	mu       sync.Mutex
	requests []Request
	calls    map[string]int // tool -> calls
}

// EchoSchema is the echo tool's input schema, with keywords mcp-go's typed
// schema does not keep: a gateway must pass it on unchanged.
const EchoSchema = `{"type":"object","properties":{"text":{"type":"string","description":"what to echo"}},"required":["text"],"oneOf":[{"required":["text"]}],"additionalProperties":false}`

// NewMCPServer is the upstream's tools: echo (text and structuredContent
// back), session (the caller's upstream session id), env (the process's
// environment, over stdio), bad-name? and echo again (dropped by a gateway),
// and slow (answers only when the request ends).
func NewMCPServer() *mcpserver.MCPServer {
	s := mcpserver.NewMCPServer("upstreamtest", "1")
	readOnly := true
	s.AddTools(
		mcpserver.ServerTool{
			Tool: mcp.Tool{Name: "echo", Description: "Echoes text.", RawInputSchema: json.RawMessage(EchoSchema),
				Annotations: mcp.ToolAnnotation{Title: "Echo", ReadOnlyHint: &readOnly}},
			Handler: func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				text := req.GetString("text", "")
				res := mcp.NewToolResultStructured(map[string]any{"echoed": text}, text)
				res.Meta = mcp.NewMetaFromMap(map[string]any{"upstream": "upstreamtest"})
				return res, nil
			},
		},
		mcpserver.ServerTool{
			Tool: mcp.NewTool("session", mcp.WithDescription("The caller's upstream session id.")),
			Handler: func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				id := ""
				if cs := mcpserver.ClientSessionFromContext(ctx); cs != nil {
					id = cs.SessionID()
				}
				return mcp.NewToolResultText(id), nil
			},
		},
		mcpserver.ServerTool{
			Tool: mcp.NewTool("env", mcp.WithDescription("The process's environment.")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				env := os.Environ()
				slices.Sort(env)
				b, _ := json.Marshal(env)
				return mcp.NewToolResultText(string(b)), nil
			},
		},
		mcpserver.ServerTool{
			Tool: mcp.NewTool("slow", mcp.WithDescription("Answers when the request ends.")),
			Handler: func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
		},
	)
	return s
}

// Start serves NewMCPServer over Streamable HTTP on 127.0.0.1 until the
// test ends, with its tools/list extended by extra raw tools (to feed a
// gateway names it must drop).
func Start(t interface{ Cleanup(func()) }, extra ...json.RawMessage) *Server {
	s := &Server{calls: map[string]int{}, mcp: NewMCPServer()}
	h := mcpserver.NewStreamableHTTPServer(s.mcp)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		body, _ := readAll(r)
		_ = json.Unmarshal(body, &msg)
		s.mu.Lock()
		s.requests = append(s.requests, Request{Header: r.Header.Clone(), Method: msg.Method})
		if msg.Method == "tools/call" {
			s.calls[msg.Params.Name]++
		}
		s.mu.Unlock()
		r.Body = newBody(body)
		if msg.Method == "tools/list" && len(extra) > 0 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			writeWithExtra(w, rec, extra)
			return
		}
		h.ServeHTTP(w, r)
	}))
	s.URL = s.srv.URL + "/mcp"
	t.Cleanup(s.Close)
	return s
}

// Close stops the upstream: it is down from then on, until Reopen.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Reopen serves again, on the same address, after Close: the upstream
// came back (on new connections; its sessions are kept).
func (s *Server) Reopen() error {
	ln, err := net.Listen("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		return err
	}
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s.srv.Config.Handler}}
	s.srv.Start()
	return nil
}

// AddTool adds a tool that answers its own name, and tells the connected
// sessions with notifications/tools/list_changed (MCP server/tools, "List
// Changed Notification"), as mcp-go does on every change of its tools.
func (s *Server) AddTool(name string) {
	s.mcp.AddTool(mcp.NewTool(name, mcp.WithDescription("Added while running.")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(name), nil
		})
}

// RemoveTool removes a tool and tells the connected sessions.
func (s *Server) RemoveTool(name string) { s.mcp.DeleteTools(name) }

// Requests are the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Calls is how many tools/call of tool the upstream got.
func (s *Server) Calls(tool string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[tool]
}

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	defer r.Body.Close()
	return io.ReadAll(r.Body)
}

func newBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// writeWithExtra writes the recorded tools/list answer with extra tools
// appended to its result.
func writeWithExtra(w http.ResponseWriter, rec *httptest.ResponseRecorder, extra []json.RawMessage) {
	var msg map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &msg); err == nil {
		if res, ok := msg["result"].(map[string]any); ok {
			tools, _ := res["tools"].([]any)
			for _, e := range extra {
				tools = append(tools, e)
			}
			res["tools"] = tools
		}
	}
	b, _ := json.Marshal(msg)
	maps.Copy(w.Header(), rec.Header())
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(b)
}

// ServeStdio serves NewMCPServer on standard input and output: a test
// binary's TestMain calls it when it is started as a stdio upstream.
func ServeStdio() error { return mcpserver.ServeStdio(NewMCPServer()) }
