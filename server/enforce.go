package server

import (
	"context"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
)

// callAccepted is mcp-go's before-call-tool hook: the message is a
// tools/call that mcp-go dispatches, so the decision made for it is
// counted against its limits and recorded, whatever the call's answer (a
// result, a denial, a tool that does not exist or is hidden).
func (s *Server) callAccepted(ctx context.Context, _ any, req *mcp.CallToolRequest) {
	if d := decisionMade(ctx, req.Params.Name); d != nil {
		s.admit(ctx, d)
		s.record(d)
	}
}

// filterTools is mcp-go's tool filter, applied to tools/list and to each
// tools/call: a tool the principal may not see is absent, and calling it
// gets the same error as a tool that does not exist.
func (s *Server) filterTools(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	p, ok := idp.PrincipalFrom(ctx)
	if !ok {
		return nil
	}
	if len(tools) == 1 {
		if d := decisionMade(ctx, tools[0].Name); d != nil {
			if d.Visible {
				return tools
			}
			return nil
		}
	}
	visible := s.visibleTools(ctx, p)
	return kept(tools, func(t mcp.Tool) bool { return visible[t.Name] })
}

// enforceCall wraps every tool handler: the call runs only when the policy
// allows it and its limits have room; any other denial is a tool result
// with isError and the text "Permission denied: <reason>", or "Rate limit
// exceeded: ..." (docs/policy-contract.md, "How a decision reaches the
// client").
func (s *Server) enforceCall(next mcpserver.ToolHandlerFunc) mcpserver.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		p, ok := idp.PrincipalFrom(ctx)
		if !ok {
			return mcp.NewToolResultError("Permission denied: no principal"), nil
		}
		d := s.decisionFor(ctx, p, req.Params.Name, req.GetArguments())
		if !d.Allowed {
			s.metrics.toolCalls.WithLabelValues(s.metrics.tool(req.Params.Name), "denied").Inc()
			return refusedCall(d), nil
		}
		start := time.Now()
		res, err := runTool(ctx, next, req)
		outcome := "success"
		if err != nil || res == nil || res.IsError {
			outcome = "error"
		}
		// The label is read after the call: an upstream tool withdrawn
		// while it ran (its series dropped) counts as unknown, not as a
		// series brought back.
		tool := s.metrics.tool(req.Params.Name)
		s.metrics.toolCalls.WithLabelValues(tool, outcome).Inc()
		s.metrics.toolDuration.WithLabelValues(tool).Observe(time.Since(start).Seconds())
		return res, err
	}
}

// runTool runs a tool's handler; a panic in it is the call's error, not the
// process's end. (mcp-go's WithRecovery does the same, as one more
// middleware built on every call.)
func runTool(ctx context.Context, h mcpserver.ToolHandlerFunc, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("panic recovered in %s tool handler: %v", req.Params.Name, r)
		}
	}()
	return h(ctx, req)
}
