package server

import (
	"io"
	"net/http"
	"time"

	"github.com/toolgate/toolgate/outcome"
)

// A refused body is drained after its 413, for a bounded time and size, so
// that the client reads the 413. Closing with part of a body unread makes
// the kernel answer the rest with a TCP reset; the client's write then
// fails, and a client that reads only once it has written its body (or
// whose TCP stack drops what it received on a reset) loses the answer. RFC
// 9112 §9.6 asks a server closing a connection to keep reading until the
// client has the response; nginx calls this a lingering close. (Of a body
// a handler left unread, Go's net/http reads at most 256 KiB,
// maxPostHandlerReadBytes, and closes half a second after the response.)
const (
	// lingerTime bounds the drain in time: enough for a few MiB over a
	// modest link (nginx waits as long between reads, lingering_timeout).
	// A client slower than this gets the reset, as before.
	lingerTime = 5 * time.Second
	// lingerBytes is how far past limits.max_body_bytes a body is drained:
	// enough for the usual mistake (a file a few MiB too large), not so
	// much that refused bodies cost more than accepted ones.
	lingerBytes = 4 << 20
)

// tooLarge is a body over the limit, refused, with what remains to be
// drained of it once the 413 is written: at most max bytes of rest (nothing
// if rest is nil).
type tooLarge struct {
	rest io.Reader
	max  int64
}

func (*tooLarge) Error() string { return "request_too_large" }

// refuseBody answers a body over the limit: 413 with Connection: close
// (RFC 9110 §15.5.14: the server may close the connection to stop the
// client sending), sent at once, then the lingering drain of what remains.
func refuseBody(w http.ResponseWriter, e *tooLarge) {
	rc := http.NewResponseController(w)
	// Else net/http, on writing the header, gives up the unread body of
	// more than 256 KiB: reading after writing is full duplex to it.
	_ = rc.EnableFullDuplex()
	w.Header().Set("Connection", "close")
	o := outcome.Of(outcome.RequestTooLarge)
	answer(w, o, oauthError{o.OAuthError, "request body is over the limit", ""})
	if e.rest == nil || rc.Flush() != nil {
		return
	}
	// Without a deadline the drain would wait on a silent client: none then.
	if rc.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, e.rest, e.max)
}
