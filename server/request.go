package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// rpcRequest is the part of a JSON-RPC request the gate reads.
type rpcRequest struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"params"`
}

// decodeRequest is scanRequest's fallback. (Apart, so that only the
// fallback puts a request on the heap.)
func decodeRequest(body []byte) (req rpcRequest, ok bool) {
	return req, json.Unmarshal(body, &req) == nil
}

// readBody reads a request body of at most limit bytes: a *tooLarge past
// it, errBadRequest when it cannot be read. A body of known length is read
// in one allocation of its size.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		if r.ContentLength > limit+lingerBytes {
			return nil, &tooLarge{} // more than the drain would read: not drained
		}
		return nil, &tooLarge{rest: r.Body, max: r.ContentLength}
	}
	var body []byte
	var err error
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		if over := (*http.MaxBytesError)(nil); errors.As(err, &over) {
			return nil, &tooLarge{rest: r.Body, max: lingerBytes}
		}
		return nil, errBadRequest
	}
	return body, nil
}

// jsonDepth is the deepest nesting of arrays and objects in a JSON text,
// found without decoding it (strings and their escapes are skipped).
func jsonDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}
