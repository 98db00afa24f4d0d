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
