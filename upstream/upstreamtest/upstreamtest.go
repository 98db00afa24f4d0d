// Package upstreamtest is a small MCP server of the project's own, on
// mcp-go, for tests of the gateway: it serves a few tools over Streamable
// HTTP on 127.0.0.1 (or over stdio) and records every request it gets, with
// its headers, so a test can prove what did and did not reach an upstream.
package upstreamtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// Request is one HTTP request the upstream got.
type Request struct {
	Header http.Header
	// Method is the JSON-RPC method ("" for a GET or a batch).
	Method string
	// ID and Params are the message's, as sent (nil when absent).
	ID, Params json.RawMessage
}

// Server is a running upstream.
type Server struct {
	URL  string // its MCP endpoint
	srv  *httptest.Server
	mcp  *mcpserver.MCPServer
	live *live
	// handler serves the requests; Restart replaces it with a new server
	// that knows none of the old one's sessions.
	handler atomic.Pointer[mcpserver.StreamableHTTPServer]

	mu       sync.Mutex
	requests []Request
	calls    map[string]int                      // tool -> calls
	mangle   map[string]func(body []byte) []byte // method -> what its answers become
}

// EchoSchema is the echo tool's input schema, with keywords mcp-go's typed
// schema does not keep: a gateway must pass it on unchanged.
const EchoSchema = `{"type":"object","properties":{"text":{"type":"string","description":"what to echo"}},"required":["text"],"oneOf":[{"required":["text"]}],"additionalProperties":false}`

// NewMCPServer is the upstream's tools: echo (text and structuredContent
// back), session (the caller's upstream session id), env (the process's
// environment, over stdio), bad-name? and echo again (dropped by a gateway),
// slow (answers only when the request ends), progress (notifications/progress
// for the caller's token, then its answer) and big (an answer of the
// requested size; as an event stream when the call has a progress token).
func NewMCPServer() *mcpserver.MCPServer {
	s, _ := newMCPServer()
	return s
}

func newMCPServer() (*mcpserver.MCPServer, *live) {
	l := newLive()
	s := mcpserver.NewMCPServer("upstreamtest", "1", mcpserver.WithPromptCapabilities(true),
		mcpserver.WithResourceCapabilities(true, true), mcpserver.WithCompletions(),
		mcpserver.WithPromptCompletionProvider(completions{}), mcpserver.WithResourceCompletionProvider(completions{}),
		mcpserver.WithHooks(l.hooks()))
	addPromptsAndResources(s)
	l.add(s)
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
		mcpserver.ServerTool{
			Tool: mcp.NewTool("progress", mcp.WithDescription("Reports steps of progress, then answers."),
				mcp.WithNumber("steps", mcp.Description("how many notifications/progress")),
				mcp.WithNumber("work_ms", mcp.Description("the work after each step, in milliseconds"))),
			Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				steps := req.GetInt("steps", 3)
				var token mcp.ProgressToken
				if req.Params.Meta != nil {
					token = req.Params.Meta.ProgressToken
				}
				for i := 1; token != nil && i <= steps; i++ {
					err := mcpserver.ServerFromContext(ctx).SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress),
						map[string]any{"progressToken": token, "progress": i, "total": steps, "message": fmt.Sprintf("step %d", i)})
					if err != nil {
						return nil, err
					}
					// mcp-go's Streamable HTTP server (v1.2.1) may drop
					// a notification sent as the answer is written: work
					// after each step, as a real tool would, leaves it
					// time to go out.
					time.Sleep(time.Duration(req.GetInt("work_ms", 0)) * time.Millisecond)
				}
				return mcp.NewToolResultText(fmt.Sprintf("done, token %v", token)), nil
			},
		},
		mcpserver.ServerTool{
			Tool: mcp.NewTool("big", mcp.WithDescription("Answers a text of the requested size."),
				mcp.WithNumber("bytes", mcp.Required())),
			Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				// With a progress token, one notification first: over
				// Streamable HTTP the answer is then an event stream.
				if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
					_ = mcpserver.ServerFromContext(ctx).SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress),
						map[string]any{"progressToken": req.Params.Meta.ProgressToken, "progress": 0})
				}
				return mcp.NewToolResultText(strings.Repeat("x", req.GetInt("bytes", 0))), nil
			},
		},
	)
	return s, l
}

// Start serves NewMCPServer over Streamable HTTP on 127.0.0.1 until the
// test ends, with its tools/list extended by extra raw tools (to feed a
// gateway names it must drop).
func Start(t interface{ Cleanup(func()) }, extra ...json.RawMessage) *Server {
	s := &Server{calls: map[string]int{}, mangle: map[string]func([]byte) []byte{}}
	s.mcp, s.live = newMCPServer()
	s.handler.Store(mcpserver.NewStreamableHTTPServer(s.mcp, mcpserver.WithStateful(true)))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := s.handler.Load()
		var msg struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
			Params json.RawMessage `json:"params"`
		}
		var params struct {
			Name string `json:"name"`
		}
		body, _ := readAll(r)
		_ = json.Unmarshal(body, &msg)
		_ = json.Unmarshal(msg.Params, &params)
		s.mu.Lock()
		s.requests = append(s.requests, Request{Header: r.Header.Clone(), Method: msg.Method, ID: msg.ID, Params: msg.Params})
		if msg.Method == "tools/call" {
			s.calls[params.Name]++
		}
		mangle := s.mangle[msg.Method]
		s.mu.Unlock()
		r.Body = newBody(body)
		if mangle != nil {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			maps.Copy(w.Header(), rec.Header())
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(mangle(rec.Body.Bytes()))
			return
		}
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

// Mangle makes every later answer to a request of method what f makes of
// the answer the server wrote (nil: the answer as written): an upstream
// that answers garbage.
func (s *Server) Mangle(method string, f func(body []byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mangle[method] = f
}

// Describe gives tool a new description from now on, as an upstream that
// changes a tool after it was reviewed does ("tool poisoning").
func (s *Server) Describe(tool, description string) {
	t := s.mcp.GetTool(tool)
	def := t.Tool
	def.Description = description
	s.mcp.AddTool(def, t.Handler)
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

// Restart is the upstream restarted: its connections are closed, and a new
// server on the same address knows none of the old one's sessions or
// subscriptions (it answers 404 for them, MCP Streamable HTTP, "Session
// Management"). Call it from the test's goroutine only.
func (s *Server) Restart() {
	s.mcp, s.live = newMCPServer()
	s.handler.Store(mcpserver.NewStreamableHTTPServer(s.mcp, mcpserver.WithStateful(true)))
	s.srv.CloseClientConnections()
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

// Main is a test package's TestMain: it runs the tests, or, in a test
// binary started with UPSTREAMTEST_STDIO=1, serves as a stdio upstream
// (ServeStdio), so that the tests can start their own binary as one.
func Main(m interface{ Run() int }) {
	if os.Getenv("UPSTREAMTEST_STDIO") == "1" {
		if err := ServeStdio(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// ServeStdio serves NewMCPServer on standard input and output: a test
// binary's TestMain (Main) calls it when it is started as a stdio upstream. Over
// stdio it has one more tool, exit, which ends the process in the middle of
// the call: a crash.
func ServeStdio() error {
	s := NewMCPServer()
	s.AddTool(mcp.NewTool("exit", mcp.WithDescription("Ends the process mid-call.")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			os.Exit(3)
			return nil, nil
		})
	return mcpserver.ServeStdio(s)
}
