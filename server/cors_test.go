package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

// withPublicURL serves the gate under a public URL of another host than the
// loopback address it listens on, as behind a reverse proxy.
func withPublicURL(u string) gateOption {
	return func(c *config.Config, _ *server.Options) { c.PublicURL = u }
}

// startProxiedGate is a ready gate whose public_url is publicURL; g.URL is
// its listen address, where the tests send their requests.
func startProxiedGate(t *testing.T, tn *idptest.Tenant, publicURL string, opts ...gateOption) *gate {
	t.Helper()
	g := startGateNotReady(t, []*idptest.Tenant{tn}, append(opts, withPublicURL(publicURL))...)
	g.URL = "http://" + g.Config.Listen
	g.waitReady()
	return g
}

// request sends method /mcp with the headers (name, value pairs; "Host" sets
// the request's host) and no token.
func (g *gate) request(method string, header ...string) *http.Response {
	g.t.Helper()
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader(initializeBody)
	} else {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, g.URL+"/mcp", body)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// Origin and Host are compared as RFC 3986 §6.2.2.1 and RFC 6454 §4 say:
// scheme and host without regard to case, the port exactly (a scheme's
// default port is the same as none). 401 means the check let the request on
// to authentication.
func TestOriginCheck(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startProxiedGate(t, tn, "https://mcp.example.com",
		// The last one is not an origin (config accepts it): it must allow nothing.
		withOrigins("https://App.Example.com", "http://localhost:8080", "http://[::1]:3000/", "https://user@app.example.com"))
	cases := []struct {
		name, header, value string
		want                int
	}{
		{"no Origin", "", "", http.StatusUnauthorized},
		{"public_url's origin", "Origin", "https://mcp.example.com", http.StatusUnauthorized},
		{"public_url's origin in capitals", "Origin", "HTTPS://MCP.EXAMPLE.COM", http.StatusUnauthorized},
		{"public_url's origin with the default port", "Origin", "https://mcp.example.com:443", http.StatusUnauthorized},
		{"public_url's host on another port", "Origin", "https://mcp.example.com:8443", http.StatusForbidden},
		{"public_url's host over http", "Origin", "http://mcp.example.com", http.StatusForbidden},
		{"allowed, configured in mixed case", "Origin", "https://app.example.com", http.StatusUnauthorized},
		{"allowed, in capitals", "Origin", "HTTP://LOCALHOST:8080", http.StatusUnauthorized},
		{"allowed IPv6 origin", "Origin", "http://[::1]:3000", http.StatusUnauthorized},
		{"allowed host on another port", "Origin", "http://localhost:8081", http.StatusForbidden},
		{"allowed host without its port", "Origin", "http://localhost", http.StatusForbidden},
		{"another host", "Origin", "https://evil.example.com", http.StatusForbidden},
		{"a suffix of an allowed host", "Origin", "https://app.example.com.evil.example", http.StatusForbidden},
		{"opaque origin", "Origin", "null", http.StatusForbidden},
		{"not an origin: a path", "Origin", "https://app.example.com/x", http.StatusForbidden},
		{"not an origin: user info", "Origin", "https://u@app.example.com", http.StatusForbidden},
		{"not an origin: no scheme", "Origin", "app.example.com", http.StatusForbidden},
		{"Host: public_url's host", "Host", "mcp.example.com", http.StatusUnauthorized},
		{"Host: public_url's host in mixed case", "Host", "MCP.Example.com", http.StatusUnauthorized},
		{"Host: public_url's host with a port", "Host", "MCP.EXAMPLE.COM:443", http.StatusUnauthorized},
		{"Host: loopback", "Host", "localhost:1234", http.StatusUnauthorized},
		{"Host: loopback in capitals", "Host", "LOCALHOST:1234", http.StatusUnauthorized},
		{"Host: another host (DNS rebinding)", "Host", "evil.example.com", http.StatusForbidden},
		{"Host: public_url's host as a prefix", "Host", "mcp.example.com.evil.example", http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.header != "" {
				h = []string{tc.header, tc.value}
			}
			if resp := g.request(http.MethodPost, h...); resp.StatusCode != tc.want {
				t.Errorf("%s: %q: %d, want %d", tc.header, tc.value, resp.StatusCode, tc.want)
			}
		})
	}
}

// The request headers the MCP TypeScript SDK's StreamableHTTPClientTransport
// sends, as a browser lists them in a preflight.
const sdkRequestHeaders = "accept, authorization, content-type, last-event-id, mcp-protocol-version, mcp-session-id"

// A page of an allowed origin can use /mcp from a browser (Fetch standard,
// "CORS protocol"): its preflight is answered without a token, and every
// answer, refusals included, lets it read the headers an MCP client needs.
// Any other origin gets a 403 without CORS headers, so the browser lets the
// page read nothing.
func TestCORSForAllowedOrigins(t *testing.T) {
	const app = "https://app.example.com"
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOrigins(app), func(c *config.Config, _ *server.Options) {
		c.Limits.MaxSessionsPerPrincipal = 1
		c.Limits.MaxBodyBytes = 1 << 10
	})
	aud := []string{g.Config.ResourceURL()}
	owner := tn.Token(idptest.Claims{Sub: "owner", Audience: aud, Scopes: []string{"openid"}})
	session := g.rawPost(owner, "", initializeBody).Header.Get("Mcp-Session-Id")
	noScope := tn.Token(imageClaims(tn.Provider(), idptest.Claims{Sub: "no-scope", Audience: aud, Scopes: []string{"openid"}}))
	other := tn.Token(idptest.Claims{Sub: "other", Audience: aud, Scopes: []string{"openid"}})

	t.Run("preflight", func(t *testing.T) {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			resp := g.request(http.MethodOptions, "Origin", app,
				"Access-Control-Request-Method", method, "Access-Control-Request-Headers", sdkRequestHeaders)
			h := resp.Header
			if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != app {
				t.Fatalf("%s: %d, Access-Control-Allow-Origin %q", method, resp.StatusCode, h.Get("Access-Control-Allow-Origin"))
			}
			if !listHas(h.Values("Access-Control-Allow-Methods"), method) {
				t.Errorf("Access-Control-Allow-Methods %q lacks %s", h.Values("Access-Control-Allow-Methods"), method)
			}
			for _, name := range strings.Split(sdkRequestHeaders, ", ") {
				if !listHas(h.Values("Access-Control-Allow-Headers"), name) {
					t.Errorf("Access-Control-Allow-Headers %q lacks %s", h.Values("Access-Control-Allow-Headers"), name)
				}
			}
			if h.Get("Access-Control-Max-Age") == "" || !listHas(h.Values("Vary"), "Origin") {
				t.Errorf("Access-Control-Max-Age %q, Vary %q", h.Get("Access-Control-Max-Age"), h.Values("Vary"))
			}
		}
	})
	t.Run("preflight from another origin", func(t *testing.T) {
		resp := g.request(http.MethodOptions, "Origin", "https://evil.example.com",
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", sdkRequestHeaders)
		if resp.StatusCode != http.StatusForbidden || hasCORSHeaders(resp.Header) {
			t.Errorf("%d %v, want 403 without CORS headers", resp.StatusCode, resp.Header)
		}
	})

	answers := []struct {
		name   string
		status int
		send   func(origin string) *http.Response
	}{
		{"initialize", http.StatusOK, func(o string) *http.Response {
			fresh := tn.Token(idptest.Claims{Sub: "fresh-" + o, Audience: aud, Scopes: []string{"openid"}})
			return g.rawPost(fresh, "", initializeBody, "Origin", o)
		}},
		{"no token", http.StatusUnauthorized, func(o string) *http.Response {
			return g.rawPost("", "", initializeBody, "Origin", o)
		}},
		{"step-up", http.StatusForbidden, func(o string) *http.Response {
			return g.rawPost(noScope, "", callBody("image_generation", `{"prompt":"x"}`), "Origin", o)
		}},
		{"another principal's session", http.StatusNotFound, func(o string) *http.Response {
			return g.rawPost(other, session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "Origin", o)
		}},
		{"body over the limit", http.StatusRequestEntityTooLarge, func(o string) *http.Response {
			return g.rawPost(owner, session, callBody("add", `{"pad":"`+strings.Repeat("x", 2<<10)+`"}`), "Origin", o)
		}},
		{"too many sessions", http.StatusTooManyRequests, func(o string) *http.Response {
			return g.rawPost(owner, "", initializeBody, "Origin", o)
		}},
	}
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			resp := a.send(app)
			h := resp.Header
			if resp.StatusCode != a.status || h.Get("Access-Control-Allow-Origin") != app || !listHas(h.Values("Vary"), "Origin") {
				t.Fatalf("%d, Access-Control-Allow-Origin %q, Vary %q; want %d, %q, Origin",
					resp.StatusCode, h.Get("Access-Control-Allow-Origin"), h.Values("Vary"), a.status, app)
			}
			for _, name := range []string{"Mcp-Session-Id", "WWW-Authenticate", "Mcp-Protocol-Version"} {
				if !listHas(h.Values("Access-Control-Expose-Headers"), name) {
					t.Errorf("Access-Control-Expose-Headers %q lacks %s", h.Values("Access-Control-Expose-Headers"), name)
				}
			}
			if resp := a.send(""); resp.StatusCode != a.status || hasCORSHeaders(resp.Header) {
				t.Errorf("without Origin: %d %v, want %d without CORS headers", resp.StatusCode, resp.Header, a.status)
			}
		})
	}
}

// The RFC 9728 documents are public: any page may read them, sending the
// MCP-Protocol-Version header the SDK sends with its discovery requests.
func TestCORSForMetadata(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		req, _ := http.NewRequest(http.MethodOptions, g.URL+path, nil)
		req.Header.Set("Origin", "https://anywhere.example")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "mcp-protocol-version")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
			!listHas(h.Values("Access-Control-Allow-Methods"), "GET") ||
			!listHas(h.Values("Access-Control-Allow-Headers"), "Mcp-Protocol-Version") ||
			h.Get("Access-Control-Max-Age") == "" {
			t.Errorf("preflight of %s: %d %v", path, resp.StatusCode, h)
		}
		resp, err = http.Get(g.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: %d, Access-Control-Allow-Origin %q", path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}

// listHas reports whether the comma-separated header values name want,
// compared as header names and methods are by browsers (case-insensitively).
func listHas(values []string, want string) bool {
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(item), want) {
				return true
			}
		}
	}
	return false
}

func hasCORSHeaders(h http.Header) bool {
	for name := range h {
		if strings.HasPrefix(name, "Access-Control-") {
			return true
		}
	}
	return false
}
