package server

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
)

// A client is told notifications/tools/list_changed (MCP server/tools,
// "List Changed Notification") only when its list did change: after an
// upstream's tools or the policy changed, a session whose principal sees the
// same tools, with the same definitions, as when it was last told (or first
// served its list) is not told.
//
// mcp-go sends the notification to every session on every change of its
// tools (SetTools) and offers no way to address one stateless 2026-07-28
// stream, so the gate decides where every notification passes: the
// response writer of each request it hands to mcp-go (listFilter). The
// decision is made at the change, before the notification goes out
// (retell): the writer only reads it, since mcp-go writes a notification
// while it holds the lock of the request's response.
//
// A session's state is a fingerprint of the list it was last told of, or
// first served (told); not the list it last listed, so that a notification
// already on its way when the client lists again still reaches it. A
// session toolgate knows nothing of (no tools/list answered yet, a GET
// without a session id, a 2026-07-28 request, which has no session) is
// always told: a needless notification costs a tools/list, a missed one a
// stale list.

// told remembers, per MCP session id, what the session knows of its list.
type told struct{ m sync.Map } // session id -> *knownList

// knownList is the list a session was last told had changed, or else first
// served, as a fingerprint, and whether a notification is due to it.
type knownList struct {
	principal *idp.Principal
	fp        atomic.Uint64
	due       atomic.Bool
}

func (t *told) first(id string, p *idp.Principal, fp uint64) {
	k := &knownList{principal: p}
	k.fp.Store(fp)
	t.m.LoadOrStore(id, k)
}

func (t *told) forget(id string) { t.m.Delete(id) }

// tell reports whether a notification/tools/list_changed now written to
// session id tells it something: it was due, or the session is unknown.
func (t *told) tell(id string) bool {
	v, ok := t.m.Load(id)
	return !ok || v.(*knownList).due.Swap(false)
}

// retell marks due every known session whose list, as the policy and
// catalog in force now serve it, differs from the list it knows. The
// server calls it after a change and before the notification goes out.
func (s *Server) retell(ctx context.Context) {
	view := s.catalog.Load()
	s.sessions.told.m.Range(func(_, v any) bool {
		k := v.(*knownList)
		visible, err := s.policy.Visible(ctx, k.principal)
		if err != nil {
			visible = nil // as tools/list would serve: nothing
		}
		now := view.fingerprint(func(yield func(string) bool) {
			for _, n := range view.names {
				if (s.dryRun || visible[n]) && !yield(n) {
					return
				}
			}
		})
		if k.fp.Swap(now) != now {
			k.due.Store(true)
		}
		return true
	})
}

// toolDigests is each tool's digest: its name and definition as served.
func toolDigests(tools []mcpserver.ServerTool) map[string]uint64 {
	out := make(map[string]uint64, len(tools))
	for _, t := range tools {
		h := fnv.New64a()
		_ = json.NewEncoder(h).Encode(t.Tool)
		out[t.Tool.Name] = h.Sum64()
	}
	return out
}

// fingerprint is the fingerprint of a list of tools by name: the sum of
// their digests, so that it does not depend on the order. A name without a
// digest (withdrawn meanwhile) counts by its name alone.
func (v *catalogView) fingerprint(names func(yield func(string) bool)) uint64 {
	var sum uint64
	for n := range names {
		d, ok := v.digest[n]
		if !ok {
			h := fnv.New64a()
			_, _ = h.Write([]byte(n))
			d = h.Sum64()
		}
		sum += d
	}
	return sum
}

// listServed is mcp-go's after-list-tools hook: the session was served its
// whole list (a page of it tells nothing), which is its state if it had
// none.
func (s *Server) listServed(ctx context.Context, _ any, req *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
	id := sessionOf(ctx)
	if id == "" || req.Params.Cursor != "" || res.NextCursor != "" {
		return
	}
	p, ok := idp.PrincipalFrom(ctx)
	if !ok {
		return
	}
	s.sessions.told.first(id, p, s.catalog.Load().fingerprint(func(yield func(string) bool) {
		for _, t := range res.Tools {
			if !yield(t.Name) {
				return
			}
		}
	}))
}

type sessionKey struct{}

// sessionOf is the MCP session id of the request in ctx ("" for none).
func sessionOf(ctx context.Context) string {
	id, _ := ctx.Value(sessionKey{}).(string)
	return id
}

// listChangedEvent is how mcp-go's Streamable HTTP transport writes the
// notification, as one Write: an SSE event (its writeSSEEvent) of the JSON
// of an mcp.JSONRPCNotification, whose fields come in this order.
var listChangedEvent = []byte(`event: message` + "\n" + `data: {"jsonrpc":"2.0","method":"` + mcp.MethodNotificationToolsListChanged + `"`)

// listFilter drops the notifications/tools/list_changed events that tell
// nothing to the session of its request.
type listFilter struct {
	mcpserver.HTTPResponseWriter
	told    *told
	session string
}

func (f *listFilter) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, listChangedEvent) && !f.told.tell(f.session) {
		return len(b), nil
	}
	return f.HTTPResponseWriter.Write(b)
}
