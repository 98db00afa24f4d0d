package server

import (
	"net/http"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// header reads the map directly, which finds a header only by its
// canonical key.
func TestHeaderKeysAreCanonical(t *testing.T) {
	for _, key := range []string{headerOrigin, headerAuthorization, headerCORSMethod, mcpserver.HeaderKeySessionID, mcp.HeaderProtocolVersion} {
		if canonical := http.CanonicalHeaderKey(key); key != canonical {
			t.Errorf("%q is not canonical (%q): header() would never find it", key, canonical)
		}
	}
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/mcp", nil)
	r.Header.Set("mcp-session-id", "abc")
	if got := header(r, mcpserver.HeaderKeySessionID); got != "abc" {
		t.Errorf("header = %q, want abc", got)
	}
}
