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
