package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseFillsDefaults(t *testing.T) {
	c, err := Parse([]byte(`
public_url: https://mcp.example.com/
issuers:
  - provider: auth0
    issuer: https://example.us.auth0.com/
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://mcp.example.com" {
		t.Errorf("public_url = %q, want the trailing slash trimmed", c.PublicURL)
	}
	is := c.Issuers[0]
	if is.Name != "https://example.us.auth0.com/" {
		t.Errorf("name = %q, want the issuer URL", is.Name)
	}
	if len(is.Audience) != 1 || is.Audience[0] != "https://mcp.example.com/mcp" {
		t.Errorf("audience = %v, want the resource URL", is.Audience)
	}
	if c.Tokens.Leeway != 30*time.Second || c.Tokens.JWKSUnknownKIDInterval != 10*time.Second {
		t.Errorf("token defaults = %+v", c.Tokens)
	}
	if c.Limits.MaxBodyBytes != 1<<20 {
		t.Errorf("max_body_bytes = %d", c.Limits.MaxBodyBytes)
	}
}

func TestParseAudienceStringOrList(t *testing.T) {
	for _, aud := range []string{`audience: a`, `audience: [a, b]`} {
		c, err := Parse([]byte("issuers:\n  - provider: oidc\n    issuer: https://i.example\n    " + aud + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", aud, err)
		}
		if c.Issuers[0].Audience[0] != "a" {
			t.Errorf("%s: audience = %v", aud, c.Issuers[0].Audience)
		}
	}
}

func TestParseDerivesLoopbackPublicURL(t *testing.T) {
	c, err := Parse([]byte("listen: 127.0.0.1:9999\nanonymous: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "http://127.0.0.1:9999" {
		t.Errorf("public_url = %q", c.PublicURL)
	}
}

// Every wrong key and value is reported, each on its own line.
func TestParseReportsEveryProblem(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown keys", `
listen: 127.0.0.1:1
anonymous: true
lisen: x
policy:
  dirr: y
  bundle: {urll: https://b.example}
issuers:
  - provider: auth0
    issuer: https://a.example/
    jwks: https://a.example/keys
`, []string{
			"line 4: lisen: unknown key",
			"line 6: policy.dirr: unknown key",
			"line 7: policy.bundle.urll: unknown key",
			"line 11: issuers[0].jwks: unknown key",
		}},
		{"unknown keys and invalid values", `
listen: 127.0.0.1:1
bogus: 1
issuers:
  - provider: auth0
    issuer: https://a.example/
    jwks_url: http://evil.example/jwks
    audiense: x
tokens:
  leeway: 1h
  cache_sise: 5
`, []string{
			"line 3: bogus: unknown key",
			"line 8: issuers[0].audiense: unknown key",
			"line 11: tokens.cache_sise: unknown key",
			`issuers[0].jwks_url: "http://evil.example/jwks" uses http:// on a host that is not loopback`,
			"tokens.leeway: 1h0m0s is outside",
		}},
		// The decoder refuses a whole mapping with a repeated key; the rest of
		// it must still be checked, and not reported as missing.
		{"repeated keys", `
listen: nowhere
public_url: https://mcp.example.com
issuers:
  - provider: auth0
    issuer: https://a.example/
    jwks_url: http://evil.example/jwks
    provider: okta
    bogus: 1
listen: 127.0.0.1:1
tokens: {leeway: 1h}
`, []string{
			"line 10: listen: given twice (first at line 2)",
			"line 8: issuers[0].provider: given twice (first at line 5)",
			"line 9: issuers[0].bogus: unknown key",
			`listen: "nowhere" is not host:port`,
			"issuers[0].jwks_url",
			"tokens.leeway",
		}},
		{"a second document", "listen: 127.0.0.1:1\nanonymous: true\nbogus: 1\n---\nlisten: x\n", []string{
			"line 3: bogus: unknown key",
			"line 4: a second YAML document; the file holds one configuration",
		}},
		{"merged keys", `
listen: 127.0.0.1:1
issuers:
  - &base
    provider: auth0
    issuer: https://a.example/
    audiense: x
  - <<: *base
    issuer: https://b.example/
    jwks_url: http://evil.example/jwks
`, []string{
			"line 7: issuers[0].audiense: unknown key",
			"line 7: issuers[1].audiense: unknown key",
			"issuers[1].jwks_url",
		}},
		{"invalid values", `
listen: nowhere
public_url: http://mcp.example.com
allowed_origins: [ftp://x]
issuers:
  - provider: okta
    issuer: stytch.com/project-1
  - provider: auth0
    issuer: https://a/
    jwks_url: http://evil.example/jwks
  - provider: auth0
    issuer: https://a/
tokens:
  leeway: 1h
  jwks_unknown_kid_interval: 1ms
`, []string{
			`listen: "nowhere" is not host:port`,
			"public_url: \"http://mcp.example.com\" uses http:// on a host that is not loopback",
			"allowed_origins[0]",
			`issuers[0].provider: "okta" is not one of`,
			"issuers[0].issuer: \"stytch.com/project-1\" is not an absolute URL; set jwks_url",
			"issuers[1].jwks_url",
			`issuers[2].issuer: "https://a/" is configured twice`,
			"tokens.leeway",
			"tokens.jwks_unknown_kid_interval",
		}},
		{"a mapping as a key beside a merge key", "anonymous: true\nlisten: 127.0.0.1:1\n? {a: 1}\n: x\n<<: {public_url: ftp://x}\npolicy: {[a]: 1, \"di r\": x}\n", []string{
			"line 3: a key that is not a name",
			"public_url: ",
			"line 6: a key that is not a name in policy",
			`line 6: policy."di r": unknown key`,
		}},
		{"a session key's variable that is not a name", "listen: 127.0.0.1:1\nanonymous: true\nsessions: {key_env: A=B, kee_env: C}\n", []string{
			"line 3: sessions.kee_env: unknown key",
			`sessions.key_env: "A=B" is not an environment variable name`,
		}},
		{"no issuer", "listen: 127.0.0.1:1\n", []string{"issuers: at least one issuer"}},
		{"public url required", "listen: 0.0.0.0:8080\nanonymous: true\n", []string{"public_url: required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("want an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("got %d lines, want %d:\n%s", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%s", w, err)
				}
			}
		})
	}
}

func TestStytchIssuerWithoutSchemeNeedsJWKSURL(t *testing.T) {
	_, err := Parse([]byte(`
public_url: https://mcp.example.com
issuers:
  - provider: stytch
    issuer: stytch.com/project-test-1
    jwks_url: https://test.stytch.com/v1/sessions/jwks/project-test-1
`))
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseUpstreamDefaults(t *testing.T) {
	c, err := Parse([]byte(`
anonymous: true
upstreams:
  - name: fs
    command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/share]
  - name: api
    url: http://127.0.0.1:3001/mcp
    prefix: ""
    sessions: shared
    timeout: 5s
    auth: {type: header, header_name: X-Api-Key, value_env: API_KEY}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.BuiltinTools {
		t.Error("builtin_tools defaults to false, want true")
	}
	fs, api := c.Upstreams[0], c.Upstreams[1]
	if *fs.Prefix != "fs_" || fs.Sessions != "per_principal" || fs.Timeout != 30*time.Second ||
		fs.MaxProcesses != 32 || fs.IdleTimeout != 10*time.Minute || fs.MaxResultBytes != 16<<20 || fs.Auth.Type != "none" {
		t.Errorf("fs defaults: prefix %q, %+v", *fs.Prefix, fs)
	}
	if *api.Prefix != "" || api.Sessions != "shared" || api.Timeout != 5*time.Second || api.Auth.ValueEnv != "API_KEY" {
		t.Errorf("api: prefix %q, %+v", *api.Prefix, api)
	}
}

func TestParseReportsEveryUpstreamProblem(t *testing.T) {
	_, err := Parse([]byte(`
anonymous: true
builtin_tools: false
upstreams:
  - name: Bad_Name
    command: [x]
    url: https://a.example/mcp
  - name: builtin
  - name: web
    url: http://example.com/mcp
    env: {A: b}
    prefix: "a b"
    sessions: sometimes
    timeout: 1h
    auth: {type: header, header_name: Mcp-Session-Id}
  - name: web
    command: [x]
    prefix: web_
    auth: {type: oauth}
  - name: cc
    command: [x]
    prefix: web_
    max_processes: -1
    max_result_bytes: 100
    auth: {type: client_credentials, token_url: ftp://t, client_id: c, value_env: V}
  - name: as
    command: [x]
    auth: {type: assertion}
    tokn: 1
`))
	if err == nil {
		t.Fatal("want an error")
	}
	want := []string{
		"line 29: upstreams[5].tokn: unknown key",
		`upstreams[0].name: "Bad_Name" is not 1 to 32`,
		"upstreams[0].command, url: give exactly one",
		`upstreams[1].name: "builtin" names toolgate's own tools`,
		"upstreams[1].command, url: give exactly one",
		`upstreams[2].url: "http://example.com/mcp" uses http:// on a host that is not loopback`,
		"upstreams[2].env: only for a command (stdio) upstream",
		`upstreams[2].prefix: "a b" has characters`,
		`upstreams[2].sessions: "sometimes" is not one of per_principal, shared`,
		"upstreams[2].timeout: 1h0m0s is outside",
		`upstreams[2].auth.header_name: "Mcp-Session-Id" is set by toolgate's MCP client itself`,
		"upstreams[2].auth.value_env: required by type header",
		`upstreams[3].name: "web" is configured twice`,
		`upstreams[3].auth.type: "oauth" is not one of none, header, client_credentials, assertion`,
		`upstreams[4].prefix: "web_" is also the prefix of upstream "web"`,
		"upstreams[4].max_processes: -1 is outside",
		"upstreams[4].max_result_bytes: 100 is outside 1024..1073741824",
		"upstreams[4].auth.value_env: not used by type client_credentials",
		"upstreams[4].auth.client_secret_env: required by type client_credentials",
		`upstreams[4].auth.token_url: "ftp://t" must be an https:// URL`,
		"upstreams[5].auth.audience: required by type assertion",
		// A stdio process gets no HTTP request to carry a credential.
		"upstreams[4].auth.type: client_credentials is for a url upstream; a command (stdio) upstream takes none",
		"upstreams[5].auth.type: assertion is for a url upstream; a command (stdio) upstream takes none",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d lines, want %d:\n%s", len(lines), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, err)
		}
	}
}

func TestParseRefusesAGateWithoutTools(t *testing.T) {
	_, err := Parse([]byte("anonymous: true\nbuiltin_tools: false\n"))
	if err == nil || !strings.Contains(err.Error(), "toolgate would serve no tool") {
		t.Errorf("err = %v", err)
	}
}
