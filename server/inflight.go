package server

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// inflight binds the requests of session-less clients (MCP 2026-07-28) to
// their owner, so that notifications/cancelled cancels only the sender's own
// requests. mcp-go keys in-flight requests by session id and request id, and
// without a session every principal shares the empty id: a guessed request
// id would cancel another principal's call. The gate therefore answers a
// session-less cancellation itself (MCP basic/utilities/cancellation: the
// receiver may ignore a cancellation it cannot match) and never passes it
// on. Within a session, mcp-go's keys are the session's, whose owner the
// gate has checked.
type inflight struct {
	mu    sync.Mutex
	calls map[string]map[uint64]context.CancelFunc // owner and request id -> the requests in flight
	next  uint64
}

func newInflight() *inflight {
	return &inflight{calls: map[string]map[uint64]context.CancelFunc{}}
}

// requestKey is the owner's key for a request id, with the id read as
// mcp-go reads it (1 and 1.0 are one id); ok is false without an id.
func requestKey(owner string, id json.RawMessage) (string, bool) {
	var v any
	if len(id) == 0 || json.Unmarshal(id, &v) != nil || v == nil {
		return "", false
	}
	return owner + "\xff" + fmt.Sprint(v), true
}

// track registers the request of id as in flight for owner, for as long
// as done is not called; ctx is cancelled by the owner's cancellation.
func (f *inflight) track(ctx context.Context, owner string, id json.RawMessage) (context.Context, func()) {
	key, ok := requestKey(owner, id)
	if !ok {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.next++
	n := f.next
	if f.calls[key] == nil {
		f.calls[key] = map[uint64]context.CancelFunc{}
	}
	f.calls[key][n] = cancel
	f.mu.Unlock()
	return ctx, func() {
		f.mu.Lock()
		if delete(f.calls[key], n); len(f.calls[key]) == 0 {
			delete(f.calls, key)
		}
		f.mu.Unlock()
		cancel()
	}
}

// cancel cancels owner's requests whose id the notifications/cancelled in
// body names; another owner's request of the same id is not touched.
func (f *inflight) cancel(owner string, body []byte) {
	var msg struct {
		Params struct {
			RequestID json.RawMessage `json:"requestId"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &msg)
	key, ok := requestKey(owner, msg.Params.RequestID)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cancel := range f.calls[key] {
		cancel()
	}
}
