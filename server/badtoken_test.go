package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp/idptest"
)

// Every class of bad token gets 401, the challenge that points at the
// metadata, and its own reason code (docs/http.md, "Token refusals").
func TestBadTokensGet401WithTheirReason(t *testing.T) {
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	other := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn})
	now := time.Now()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": tn.Issuer(), "sub": "auth0|bad", "aud": g.Config.ResourceURL(),
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	good := tn.Sign(nil, claims(nil))
	parts := strings.Split(good, ".")
	cases := []struct {
		name, token, reason string
		inQuery             bool
	}{
		{"alg none", tn.Sign(map[string]any{"alg": "none"}, claims(nil)), "alg_not_allowed", false},
		{"HS256 signed with the public key", tn.Sign(map[string]any{"alg": "HS256"}, claims(nil)), "alg_not_allowed", false},
		{"unknown kid", tn.Sign(map[string]any{"kid": "no-such-key"}, claims(nil)), "key_unknown", false},
		{"bad signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), "signature_invalid", false},
		{"signed by another tenant's key", other.Sign(map[string]any{"kid": tn.CurrentKID()}, claims(nil)), "signature_invalid", false},
		{"expired", tn.Sign(nil, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), "token_expired", false},
		{"nbf in the future", tn.Sign(nil, claims(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), "token_not_yet_valid", false},
		{"iat in the future", tn.Sign(nil, claims(func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })), "token_issued_in_future", false},
		{"no exp", tn.Sign(nil, claims(func(c map[string]any) { delete(c, "exp") })), "exp_missing", false},
		{"wrong iss", tn.Sign(nil, claims(func(c map[string]any) { c["iss"] = other.Issuer() + "x" })), "issuer_unknown", false},
		{"wrong aud", tn.Sign(nil, claims(func(c map[string]any) { c["aud"] = []string{"https://other.example/mcp"} })), "audience_mismatch", false},
		{"missing aud", tn.Sign(nil, claims(func(c map[string]any) { delete(c, "aud") })), "audience_missing", false},
		{"missing sub", tn.Sign(nil, claims(func(c map[string]any) { delete(c, "sub") })), "subject_missing", false},
		{"token only in the query string", good, "token_in_query", true},
		{"oversized", tn.Sign(nil, claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 17<<10) })), "token_too_large", false},
		{"two segments", parts[0] + "." + parts[1], "token_malformed", false},
		{"four segments", good + ".x", "token_malformed", false},
		{"bad base64", parts[0] + ".!!!." + parts[2], "token_malformed", false},
		{"not a JWT", "opaque-access-token", "token_malformed", false},
	}
	gateLog := func() string { return logOf(t) }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := g.URL + "/mcp"
			if tc.inQuery {
				url += "?access_token=" + tc.token
			}
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(initializeBody))
			req.Header.Set("Content-Type", "application/json")
			if !tc.inQuery {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp.Body)
			resp.Body.Close()
			want := `Bearer error="invalid_token", error_description="` + tc.reason + `", resource_metadata="` + g.URL + `/.well-known/oauth-protected-resource/mcp"`
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
				t.Errorf("got %d %q\nwant 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
			}
			if strings.Contains(body, tc.token) || strings.Contains(gateLog(), tc.token) {
				t.Error("the token was echoed or logged")
			}
		})
	}
	t.Run("the good token passes", func(t *testing.T) {
		if resp := g.rawPost(good, "", initializeBody); resp.StatusCode != http.StatusOK {
			t.Errorf("%d", resp.StatusCode)
		}
	})
	// RFC 6750 §3.1: a request without Bearer credentials, whether it has no
	// Authorization header or one of another scheme, gets a challenge
	// without an error code; the JSON body still names the reason.
	metadata := `resource_metadata="` + g.URL + `/.well-known/oauth-protected-resource/mcp"`
	for _, tc := range []struct {
		name, authorization, challenge, reason string
	}{
		{"no token", "", `Bearer ` + metadata, "token_missing"},
		{"Basic", "Basic dXNlcjpwYXNz", `Bearer ` + metadata, "not_bearer"},
		{"Digest", `Digest username="u", realm="r"`, `Bearer ` + metadata, "not_bearer"},
		{"a scheme without credentials", "Negotiate", `Bearer ` + metadata, "not_bearer"},
		{"Bearer run into its token", "Bearer" + good, `Bearer ` + metadata, "not_bearer"},
		{"bearer in lower case is Bearer (RFC 7235 §2.1)", "bearer not-a-jwt",
			`Bearer error="invalid_token", error_description="token_malformed", ` + metadata, "token_malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			if tc.authorization == "" {
				resp = g.rawPost("", "", initializeBody)
			} else {
				resp = g.rawPost("", "", initializeBody, "Authorization", tc.authorization)
			}
			var body struct {
				Description string `json:"error_description"`
			}
			err := json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != tc.challenge {
				t.Errorf("got %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.challenge)
			}
			if err != nil || body.Description != tc.reason {
				t.Errorf("body reason %q (%v), want %q", body.Description, err, tc.reason)
			}
		})
	}
}

// flip changes the signature's first character, keeping it base64url.
func flip(sig string) string {
	b := []byte(sig)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}
