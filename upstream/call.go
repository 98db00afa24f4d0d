package upstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// inflight is one forwarded tools/call waiting for its answer.
type inflight struct {
	id  mcp.RequestId
	c   *client.Client  // the upstream session it was sent on
	ctx context.Context // the client's request, to reach its session
	// token is the client's own progress token (nil: it asked for none).
	token mcp.ProgressToken
	// tooLarge is set when the answer went past max_result_bytes.
	tooLarge atomic.Bool
}

type inflightKey struct{}

// callIDs numbers the calls toolgate forwards: each is a request id, and the
// progress token of the call when the client asked for progress.
var callIDs atomic.Uint64

// call forwards the tool name with the client's arguments on s, as a
// request of toolgate's own, and answers what the client gets; start is
// when the client's call began.
//
// Progress (MCP basic/utilities, "Progress"): when the client's request has
// a progressToken, the upstream gets one toolgate made for this call, never
// the client's own (on a shared session two principals' tokens could
// collide, and one would get the other's progress), and the upstream's
// notifications/progress for it reach the caller with its own token.
//
// Cancellation (MCP basic/utilities, "Cancellation"): when the call ends
// before its answer, because the client cancelled it, went away or
// toolgate's timeout ended, the upstream gets notifications/cancelled for
// the request, and the session stays open for the next call.
func (u *Upstream) call(ctx context.Context, start time.Time, s *session, key, name string, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	n := callIDs.Add(1)
	f := &inflight{id: mcp.NewRequestId(fmt.Sprintf("toolgate-call-%d", n)), c: s.c, ctx: ctx}
	params := map[string]any{"name": name}
	if req.Params.Arguments != nil {
		params["arguments"] = req.Params.Arguments
	}
	if m := req.Params.Meta; m != nil && m.ProgressToken != nil {
		f.token = m.ProgressToken
		minted := fmt.Sprintf("toolgate-progress-%d", n)
		params["_meta"] = map[string]any{"progressToken": minted}
		u.calls.Store(minted, f)
		defer u.calls.Delete(minted)
	}
	res, err := s.c.GetTransport().SendRequest(context.WithValue(ctx, inflightKey{}, f), transport.JSONRPCRequest{
		JSONRPC: mcp.JSONRPC_VERSION, ID: f.id, Method: string(mcp.MethodToolsCall), Params: params,
	})
	switch {
	case u.overCap(s, key, f, err):
		err = fmt.Errorf("upstream %s answered more than %s", u.cfg.Name, byteSize(u.cfg.MaxResultBytes))
		u.observe(ctx, mcp.MethodToolsCall, start, err)
		u.log.Warn("upstream answer over max_result_bytes; the call fails", "tool", name, "max_result_bytes", u.cfg.MaxResultBytes)
		return mcp.NewToolResultError(err.Error()), nil
	case err != nil && (ctx.Err() != nil || isTimeout(err)):
		if u.abandon(ctx, start, mcp.MethodToolsCall, s, key, f.id, err) {
			return mcp.NewToolResultError(fmt.Sprintf("upstream %s did not answer within %s", u.cfg.Name, u.cfg.Timeout)), nil
		}
		return mcp.NewToolResultError("the call was cancelled"), nil
	case err != nil:
		err = transport.NewError(err)
		u.observe(ctx, mcp.MethodToolsCall, start, err)
		// The session may be dead (a crashed process, a lost
		// connection): the next call opens another, and the tools are
		// listed again to tell whether the upstream is up.
		u.drop(key, s)
		return u.failed(ctx, err), nil
	case res.ID.String() != f.id.String():
		err = fmt.Errorf("the answer is to request %s, not %s", res.ID.String(), f.id.String())
	case res.Error != nil:
		err = res.Error.AsError()
		u.observe(ctx, mcp.MethodToolsCall, start, err)
		return nil, err // the upstream's JSON-RPC error, as it sent it
	}
	var result *mcp.CallToolResult
	if err == nil {
		result, err = mcp.ParseCallToolResult(&res.Result)
	}
	u.observe(ctx, mcp.MethodToolsCall, start, err)
	if err != nil {
		u.log.Warn("upstream answered a malformed result; the call fails", "tool", name, "error", err)
		return mcp.NewToolResultError(fmt.Sprintf("upstream %s answered a malformed result", u.cfg.Name)), nil
	}
	return result, nil
}

// overCap reports whether the answer to f on s, whose sending ended with
// err, went past max_result_bytes: over Streamable HTTP the call's own
// body was cut (capBodies); over stdio the process's output was, in the
// middle of a line, so nothing more can be read from it and the session is
// dropped.
func (u *Upstream) overCap(s *session, key string, f *inflight, err error) bool {
	stdio, _ := s.c.GetTransport().(*stdioProcess)
	if !f.tooLarge.Load() && (err == nil || stdio == nil || !stdio.tooLarge.Load()) {
		return false
	}
	if stdio != nil {
		u.drop(key, s)
	}
	return true
}

// abandon gives up request id of method on s, whose sending ended with err
// because ctx ended or the transport timed out (the HTTP transport's own
// bound on the answer's headers is the timeout too: it may fire first). The
// request is observed as timed out or cancelled, and the upstream is told
// (cancelUpstream). It reports whether the request timed out.
func (u *Upstream) abandon(ctx context.Context, start time.Time, method mcp.MCPMethod, s *session, key string, id mcp.RequestId, err error) (timedOut bool) {
	timedOut = ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)
	if timedOut {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	u.observe(ctx, method, start, err)
	u.cancelUpstream(s, key, id, timedOut)
	return timedOut
}

// cancelUpstream tells the upstream that toolgate no longer waits for the
// request id, off the caller's path. Over Streamable HTTP, a request whose
// connection breaks is not thereby cancelled (MCP transports, "Sending
// Messages to the Server"), so the notification is sent on every
// transport. After toolgate's own timeout the session is checked with a
// ping (MCP basic/utilities, "Ping"): one that does not answer either is
// closed, so that the next call opens another.
func (u *Upstream) cancelUpstream(s *session, key string, id mcp.RequestId, timedOut bool) {
	reason := "the client cancelled the request"
	if timedOut {
		reason = fmt.Sprintf("no answer within toolgate's timeout of %s", u.cfg.Timeout)
	}
	go func() {
		ctx, cancel := context.WithTimeout(u.pool.ctx, u.cfg.Timeout)
		defer cancel()
		err := s.c.GetTransport().SendNotification(ctx, mcp.JSONRPCNotification{
			JSONRPC: mcp.JSONRPC_VERSION,
			Notification: mcp.Notification{Method: string(mcp.MethodNotificationCancelled), Params: mcp.NotificationParams{
				AdditionalFields: map[string]any{"requestId": id, "reason": reason}}},
		})
		if err == nil && timedOut {
			err = s.c.Ping(ctx)
		}
		if err != nil && u.pool.ctx.Err() == nil {
			u.log.Warn("upstream session closed after a call it did not answer", "error", err)
			u.drop(key, s)
		}
	}()
}

// relayProgress passes the notifications/progress the session c gets for a
// call in flight on c to the client that made the call, under the client's
// own token. A token of no call in flight, or of another session's call, is
// ignored.
func (u *Upstream) relayProgress(c *client.Client) func(mcp.JSONRPCNotification) {
	return func(n mcp.JSONRPCNotification) {
		if n.Method != string(mcp.MethodNotificationProgress) {
			return
		}
		token, _ := n.Params.AdditionalFields["progressToken"].(string)
		v, _ := u.calls.Load(token)
		f, ok := v.(*inflight)
		if !ok || f.c != c {
			return
		}
		params := maps.Clone(n.Params.AdditionalFields)
		params["progressToken"] = f.token
		srv := mcpserver.ServerFromContext(f.ctx)
		if srv == nil {
			return
		}
		if err := srv.SendNotificationToClient(f.ctx, string(mcp.MethodNotificationProgress), params); err != nil {
			u.log.Debug("progress not passed to the client", "error", err)
		}
	}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// byteSize is n for a message: in MiB when it is a whole number of them.
func byteSize(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
