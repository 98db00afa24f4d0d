package server

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/toolgate/toolgate/config"
)

// originKey is the form in which origins are compared (RFC 6454 §4 and
// §6.2; RFC 3986 §6.2.2.1 and §6.2.3): scheme and host in lower case, the
// port as given unless it is the scheme's default, which is dropped. It is
// "" for anything that is not an http(s) origin: "null", a path, a query,
// user info.
func originKey(origin string) string {
	u, err := url.Parse(origin) // lower-cases the scheme
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.Path != "" || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return ""
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return u.Scheme + "://" + host
}

// The CORS answers of /mcp (Fetch standard, "CORS protocol"). A browser
// client of another origin sends its token in Authorization and JSON
// bodies, so it needs a preflight; and it can read only the response
// headers listed as exposed: the session id, the protocol version and the
// Bearer challenge (so that a 401 or 403 can start authorization).
const (
	corsMethods = "GET, POST, DELETE"
	// What the MCP TypeScript SDK's StreamableHTTPClientTransport sends.
	corsHeaders = "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID"
	corsExposed = "Mcp-Session-Id, WWW-Authenticate, Mcp-Protocol-Version"
	// Chromium's cap. A cached preflight grants nothing by itself: every
	// request is checked again, and answered without CORS headers once its
	// origin is no longer allowed.
	corsMaxAge = "7200"
)

// allowOrigin lets a page of origin, which checkOrigin allowed, read the
// answer: it sets the CORS headers, and answers a preflight itself (which
// carries no token, so must not reach authentication), returning true.
// Without an Origin header there is nothing to set: same-origin GETs and
// non-browser clients send none, and no shared cache keeps /mcp answers
// (no-store, or event streams), so Vary is needed only where headers vary.
func allowOrigin(w http.ResponseWriter, r *http.Request, origin string) (answered bool) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", corsExposed)
	return false
}

// checkOrigin refuses a browser request from an origin that is neither
// public_url's nor allowed (MCP transports, "Security Warning": servers MUST
// validate Origin, against DNS rebinding), and a Host that names neither
// public_url's host nor loopback. Origins are compared as originKey says,
// hosts without regard to case (RFC 3986 §6.2.2.1). It runs before
// authentication, and lets a page of an allowed origin read the answers
// (allowOrigin).
func (s *Server) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !s.origins[originKey(origin)] {
			s.writeError(w, errOriginForbidden)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if !strings.EqualFold(host, s.publicHost) && !config.IsLoopbackHost(host) {
			s.writeError(w, errOriginForbidden)
			return
		}
		if origin != "" && allowOrigin(w, r, origin) {
			return
		}
		next.ServeHTTP(w, r)
	})
}
