package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// eventually waits (up to 10 s) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requestsOf are the requests of method the upstream got.
func requestsOf(up *upstreamtest.Server, method string) []upstreamtest.Request {
	var out []upstreamtest.Request
	for _, r := range up.Requests() {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// cancelledFor reports whether the upstream got notifications/cancelled
// for the request id.
func cancelledFor(up *upstreamtest.Server, id json.RawMessage) bool {
	for _, r := range requestsOf(up, "notifications/cancelled") {
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		if json.Unmarshal(r.Params, &p) == nil && string(p.RequestID) == string(id) {
			return true
		}
	}
	return false
}

// A call that ends before its answer, because the client cancelled it or
// toolgate's timeout ended, is cancelled upstream with the forwarded
// request's id (MCP basic/utilities, "Cancellation"), and the principal's
// upstream session goes on serving it.
func TestAnUnansweredCallIsCancelledUpstream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout string
		cancel  bool
		want    string
	}{
		{"the client cancels", "10s", true, ""},
		{"toolgate's timeout ends", "300ms", false, "upstream up did not answer within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := upstreamtest.Start(t)
			p := startPool(t, Options{}, upstreamConfig(t, "name: up\nurl: "+up.URL+"\ntimeout: "+tc.timeout))
			session := text(call(t, toolNamed(t, p, "up_session"), "alice", nil))

			ctx, cancel := context.WithCancel(asPrincipal("alice"))
			defer cancel()
			if tc.cancel {
				go func() {
					for up.Calls("slow") == 0 {
						time.Sleep(10 * time.Millisecond)
					}
					cancel()
				}()
			}
			req := mcp.CallToolRequest{}
			req.Params.Name = "up_slow"
			res, err := toolNamed(t, p, "up_slow").Handler(ctx, req)
			if err != nil || !res.IsError || !strings.Contains(text(res), tc.want) {
				t.Errorf("the call = %+v, %v; want an error result %q", res, err, tc.want)
			}

			calls := requestsOf(up, "tools/call")
			slow := calls[len(calls)-1]
			if !strings.Contains(string(slow.Params), `"slow"`) || len(slow.ID) == 0 {
				t.Fatalf("the last call upstream: %s %s", slow.ID, slow.Params)
			}
			eventually(t, "notifications/cancelled for "+string(slow.ID), func() bool { return cancelledFor(up, slow.ID) })
			if !tc.cancel {
				// After a timeout toolgate pings the session before
				// it keeps it.
				eventually(t, "a ping", func() bool { return len(requestsOf(up, "ping")) > 0 })
			}
			if got := text(call(t, toolNamed(t, p, "up_session"), "alice", nil)); got != session {
				t.Errorf("alice's session after the cancelled call: %q, want %q (the same)", got, session)
			}
		})
	}
}

// An answer over max_result_bytes fails the call with a clear error, and
// the upstream serves the next call: over Streamable HTTP (a JSON answer,
// an event stream) on the same session, over
// stdio on a new process. (The default, 16 MiB, is config's.)
func TestAnAnswerOverTheCapFailsTheCall(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	up := upstreamtest.Start(t)
	stdio := fmt.Sprintf("command: [%q]\nenv: {UPSTREAMTEST_STDIO: \"1\"}", exe)
	for _, tc := range []struct {
		name, cfg string
		bytes     int
		progress  bool
		want      string
	}{
		{"http json", "url: " + up.URL + "\nmax_result_bytes: 1048576", 1<<20 + 1, false, "upstream up answered more than 1 MiB"},
		{"http event stream", "url: " + up.URL + "\nmax_result_bytes: 4096", 5000, true, "upstream up answered more than 4096 bytes"},
		{"stdio", stdio + "\nmax_result_bytes: 4096", 5000, false, "upstream up answered more than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPool(t, Options{}, upstreamConfig(t, "name: up\n"+tc.cfg))
			big := toolNamed(t, p, "up_big")
			bigCall := func(n int) *mcp.CallToolResult {
				req := mcp.CallToolRequest{}
				req.Params.Name, req.Params.Arguments = "up_big", map[string]any{"bytes": n}
				if tc.progress {
					req.Params.Meta = &mcp.Meta{ProgressToken: "p"}
				}
				res, err := big.Handler(asPrincipal("alice"), req)
				if err != nil {
					t.Fatalf("up_big %d: %v", n, err)
				}
				return res
			}
			if res := bigCall(1000); res.IsError || len(text(res)) != 1000 {
				t.Fatalf("an answer under the cap: %.200v", text(res))
			}
			if res := bigCall(tc.bytes); !res.IsError || text(res) != tc.want {
				t.Errorf("an answer over the cap: isError %v, %.200q; want %q", res.IsError, text(res), tc.want)
			}
			if res := call(t, toolNamed(t, p, "up_echo"), "alice", map[string]any{"text": "after"}); res.IsError || text(res) != "after" {
				t.Errorf("the next call: %+v", res)
			}
		})
	}
}

// capReader counts each message as mcp-go splits them: a comment line
// (":") does not end an SSE event, a line of carriage returns does.
func TestCapReaderCountsEachMessage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		mode     capMode
		over     bool
	}{
		{"events under the cap", "data: 0123456789\n\ndata: 0123456789\r\n\r\n", capEvent, false},
		{"an event over the cap", "data: 0123456789\ndata: 0123456789\n\n", capEvent, true},
		{"a comment does not end an event", "data: 0123456789\n:\ndata: 0123456789\n\n", capEvent, true},
		{"lines under the cap", "0123456789012345678\n0123456789012345678\n", capLine, false},
		{"a line over the cap", "01234567890123456789012\n", capLine, true},
		{"a body over the cap", "0123456789\n0123456789\n", capWhole, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tripped atomic.Bool
			r := &capReader{r: iotest.OneByteReader(strings.NewReader(tc.in)), max: 20, mode: tc.mode, tripped: &tripped}
			_, err := io.ReadAll(r)
			if over := errors.Is(err, errTooLarge); over != tc.over || tripped.Load() != tc.over {
				t.Errorf("over the cap: %v (err %v, tripped %v), want %v", over, err, tripped.Load(), tc.over)
			}
		})
	}
}

// An answer over max_result_bytes to a resources/read fails it with a
// clear error, counted as outcome error (an answer, too large), not
// refused (which is a request not sent at max_processes).
func TestAReadOverTheCapIsAnError(t *testing.T) {
	up := upstreamtest.Start(t)
	up.AddResource("test://doc/big", strings.Repeat("x", 1<<20+1))
	var mu sync.Mutex
	outcomes := map[string][]string{}
	p := startPool(t, Options{OnRequest: func(_, method, outcome string, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		outcomes[method] = append(outcomes[method], outcome)
	}}, upstreamConfig(t, "name: up\nurl: "+up.URL+"\nmax_result_bytes: 1048576"))
	req := mcp.ReadResourceRequest{}
	req.Params.URI = "test://doc/big"
	_, err := p.Read(asPrincipal("alice"), "up", req)
	if err == nil || err.Error() != "upstream up answered more than 1 MiB" {
		t.Fatalf("a read over the cap: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := outcomes["resources/read"]; !slices.Equal(got, []string{OutcomeError}) {
		t.Errorf("resources/read outcomes %v, want [%s]", got, OutcomeError)
	}
}
