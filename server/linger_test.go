package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp/idptest"
)

// A body over limits.max_body_bytes (1 MiB by default) is refused with a
// 413 that the client gets to read, whether its body has a Content-Length
// (refused before reading) or is chunked (refused once it crosses the
// limit), and whether the client reads while it sends (Go's http.Client,
// Node's fetch) or only after sending the whole body (the raw socket here).
// Without the drain, the server closes with the body unread and the kernel
// answers the rest of it with a reset: the client's write fails, and a
// client that only reads once it has written (or whose TCP stack drops what
// it received on a reset) never sees the 413.
//
// Loopback's buffers grow to absorb megabytes, which hides this: the gate
// here has small receive buffers, and the raw client a small send buffer, as
// across a real network.
func TestOversizedBodyGetsA413TheClientReads(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGateOn(t, smallBuffers(t), []*idptest.Tenant{tn})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	for _, tc := range []struct {
		size    int
		chunked bool
		raw     bool // write the whole body, then read the answer
	}{
		{size: 2 << 20},
		{size: 8 << 20},
		{size: 2 << 20, chunked: true},
		{size: 8 << 20, chunked: true},
		{size: 2 << 20, raw: true},
		{size: 2 << 20, chunked: true, raw: true},
	} {
		name := fmt.Sprintf("%d MiB, chunked %v, raw socket %v", tc.size>>20, tc.chunked, tc.raw)
		t.Run(name, func(t *testing.T) {
			body := callBody("add", `{"a":1,"b":2,"pad":"`+strings.Repeat("x", tc.size)+`"}`)
			var resp *http.Response
			var err error
			if tc.raw {
				resp, err = postWholeBodyThenRead(g, tok, body, tc.chunked)
			} else {
				req := newMCPRequest(http.MethodPost, g.URL, tok, "", "")
				req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
				if tc.chunked {
					req.ContentLength = -1
				}
				resp, err = http.DefaultClient.Do(req)
			}
			if err != nil {
				t.Fatalf("the client did not read an answer: %v", err)
			}
			defer resp.Body.Close()
			var got struct{ Error string }
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("reading the answer's body: %v", err)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge || got.Error != "request_too_large" || !resp.Close {
				t.Errorf("answer: %d %+v, Connection: close %v; want 413 request_too_large, Connection: close", resp.StatusCode, got, resp.Close)
			}
			// Sent before the drain, the 413 must be whole as sent: chunked,
			// its end would come only after the drain.
			if resp.ContentLength < 0 {
				t.Error("the 413 has no Content-Length")
			}
		})
	}
}

// The drain is bounded: a client that goes on sending well past the limit
// and the drain's allowance (a few MiB) has its connection closed before it
// is done.
func TestOversizedBodyDrainIsBounded(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGateOn(t, smallBuffers(t), []*idptest.Tenant{tn})
	tok := tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}})
	body := strings.Repeat("x", 32<<20)
	for _, chunked := range []bool{false, true} {
		if _, err := postWholeBodyThenRead(g, tok, body, chunked); err == nil {
			t.Errorf("chunked %v: the gate read a 32 MiB body to its end", chunked)
		}
	}
}

// postWholeBodyThenRead sends a POST /mcp over a connection of its own and
// reads the answer only once the whole body is written, as simple clients
// do.
func postWholeBodyThenRead(g *gate, tok, body string, chunked bool) (*http.Response, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
	if err != nil {
		return nil, err
	}
	g.t.Cleanup(func() { conn.Close() })
	if err := conn.(*net.TCPConn).SetWriteBuffer(smallBuffer); err != nil {
		return nil, err
	}
	// Not a timing assertion: only so that a hung exchange fails the test.
	if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return nil, err
	}
	framing := fmt.Sprintf("Content-Length: %d", len(body))
	if chunked {
		framing = "Transfer-Encoding: chunked"
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2025-06-18\r\n%s\r\n\r\n",
		conn.RemoteAddr(), tok, framing)
	if !chunked {
		w.WriteString(body)
	} else {
		const chunk = 64 << 10
		for len(body) > 0 {
			n := min(chunk, len(body))
			fmt.Fprintf(w, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		w.WriteString("0\r\n\r\n")
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	return http.ReadResponse(bufio.NewReader(conn), nil)
}

// smallBuffer is the size of the TCP buffers that stand for a network path
// in these tests: what the peers can hold of a body nobody reads.
const smallBuffer = 64 << 10

// smallBuffers is a loopback listener whose connections have receive
// buffers of smallBuffer (which also turns off the kernel's growing them).
func smallBuffers(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return smallBufferListener{ln}
}

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetReadBuffer(smallBuffer)
	}
	return c, err
}
