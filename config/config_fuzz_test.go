package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: arbitrary bytes as the configuration file never panic. Parse
// either refuses them with one problem per non-empty line, or returns a
// configuration that validates again unchanged, whose public_url is a URL
// toolgate may publish, and whose issuers all have a name and an audience.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"listen: 127.0.0.1:9999\nanonymous: true\n",
		"public_url: https://mcp.example.com/\nissuers:\n  - provider: auth0\n    issuer: https://example.us.auth0.com/\n",
		"public_url: https://mcp.example.com\nissuers:\n  - name: st\n    provider: stytch\n    issuer: stytch.com/project-test-1\n    jwks_url: https://test.stytch.com/v1/sessions/jwks/project-test-1\n    audience: [a, b]\n",
		"listen: 0.0.0.0:80\npublic_url: http://mcp.example.com\nunknown: 1\ntokens: {leeway: 1h, cache_size: -1}\n",
		"anonymous: true\npolicy: {dir: rego, dry_run: true, eval_timeout: 5s}\nmetrics: {listen: \":9090\"}\ndecision_log: {arguments: hash, redact: [password]}\nlimits: {max_body_bytes: 2048, max_json_depth: 8}\n",
		"anonymous: true\nissuers:\n  - provider: oidc\n    issuer: https://a.example\n    audience: \"\"\n  - provider: oidc\n    issuer: https://a.example\n",
		"anonymous: true\nbuiltin_tools: false\nupstreams:\n  - {name: fs, command: [npx, srv], env: {A: b}, sessions: shared}\n  - {name: api, url: \"http://[::1]:1/mcp\", prefix: \"\", auth: {type: header, header_name: X-Key, value_env: K}}\n",
		"- a\n- b\n",
		"a: &a [*a]\n",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Errorf("Parse returned a configuration and an error")
			}
			for i, line := range strings.Split(err.Error(), "\n") {
				if strings.TrimSpace(line) == "" {
					t.Errorf("line %d of the error is empty: %q", i+1, err.Error())
				}
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a configuration nor an error")
		}
		if err := CheckURL(c.PublicURL); err != nil {
			t.Errorf("public_url: %v", err)
		}
		for i, is := range c.Issuers {
			if is.Name == "" {
				t.Errorf("issuers[%d] has no name", i)
			}
			if len(is.Audience) == 0 {
				t.Errorf("issuers[%d] has no audience", i)
			}
			for j, a := range is.Audience {
				if a == "" {
					t.Errorf("issuers[%d].audience[%d] is empty", i, j)
				}
			}
		}

		before := *c
		before.Issuers = slices.Clone(c.Issuers) // Validate sets names and audiences in place
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed configuration does not validate again: %v", err)
		}
		if !reflect.DeepEqual(before, *c) {
			t.Errorf("validating again changed the configuration:\n before %+v\n after  %+v", before, *c)
		}
	})
}
