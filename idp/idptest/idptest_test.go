package idptest

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

var allProviders = []string{ProviderAuth0, ProviderWorkOS, ProviderStytch}

// newKeyfunc is the verifier the brief asks for: keyfunc v3 with its defaults,
// stopped when the test ends.
func newKeyfunc(t *testing.T, tn *Tenant) keyfunc.Keyfunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kf, err := keyfunc.NewDefaultCtx(ctx, []string{tn.JWKSURL()})
	if err != nil {
		t.Fatalf("keyfunc: %v", err)
	}
	return kf
}

// verify parses tok with kf, bounding any JWKS refresh to two seconds.
func verify(kf keyfunc.Keyfunc, tok string, opts ...jwt.ParserOption) (*jwt.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return jwt.Parse(tok, kf.KeyfuncCtx(ctx), opts...)
}

// payload decodes the claims of tok without verifying it.
func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	return decodeSegment(t, parts[1])
}

func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	return decodeSegment(t, strings.Split(tok, ".")[0])
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode segment: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal segment: %v", err)
	}
	return m
}

func get(t *testing.T, ctx context.Context, url string) (int, http.Header, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

func mustGet(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	code, h, body, err := get(t, context.Background(), url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return code, h, body
}

func jwksKIDs(t *testing.T, tn *Tenant) []string {
	t.Helper()
	code, _, body := mustGet(t, tn.JWKSURL())
	if code != http.StatusOK {
		t.Fatalf("JWKS status %d", code)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k["kid"].(string))
	}
	return kids
}

// rx marks an expected claim that must be a string matching the pattern.
type rx string

var (
	ulid = `[0-9A-HJKMNP-TV-Z]{26}`
	uuid = `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
)

// checkClaims compares got with want: rx values by pattern, the rest by
// value after a JSON round trip. Claims absent from want must be absent.
func checkClaims(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("claim %q missing, want %v", k, w)
			continue
		}
		if p, isRx := w.(rx); isRx {
			s, _ := g.(string)
			if !regexp.MustCompile(`^` + string(p) + `$`).MatchString(s) {
				t.Errorf("claim %q = %#v, want match for %s", k, g, p)
			}
			continue
		}
		b, _ := json.Marshal(w)
		var norm any
		_ = json.Unmarshal(b, &norm)
		if !reflect.DeepEqual(g, norm) {
			t.Errorf("claim %q = %#v, want %#v", k, g, norm)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected claim %q = %#v", k, g)
		}
	}
}

func TestProviders(t *testing.T) {
	for _, provider := range allProviders {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			tn := NewTenant(t, provider)
			if tn.Provider() != provider {
				t.Errorf("Provider() = %q", tn.Provider())
			}
			if !strings.HasPrefix(tn.URL(), "http://127.0.0.1:") {
				t.Errorf("URL() = %q, want loopback", tn.URL())
			}
			wantIss := tn.URL()
			if provider == ProviderAuth0 {
				wantIss += "/"
			}
			if tn.Issuer() != wantIss {
				t.Errorf("Issuer() = %q, want %q", tn.Issuer(), wantIss)
			}
			wantJWKS := map[string]string{
				ProviderAuth0:  "/.well-known/jwks.json",
				ProviderWorkOS: "/oauth2/jwks",
				ProviderStytch: "/.well-known/jwks.json",
			}[provider]
			if tn.JWKSURL() != tn.URL()+wantJWKS {
				t.Errorf("JWKSURL() = %q", tn.JWKSURL())
			}

			t.Run("verify", func(t *testing.T) { testVerify(t, tn) })
			t.Run("discovery", func(t *testing.T) { testDiscovery(t, tn) })
			t.Run("layout", func(t *testing.T) { testLayout(t, tn) })
		})
	}
}

func testVerify(t *testing.T, tn *Tenant) {
	kf := newKeyfunc(t, tn)
	aud := "https://mcp.example.com/mcp"
	tok := tn.Token(Claims{Audience: []string{aud}, Scopes: []string{"openid", "tools:read"}, ClientID: "client_1"})
	parsed, err := verify(kf, tok,
		jwt.WithIssuer(tn.Issuer()), jwt.WithAudience(aud), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !parsed.Valid {
		t.Fatal("token not valid")
	}
	h := parsed.Header
	if h["kid"] != tn.CurrentKID() || h["typ"] != "JWT" || h["alg"] != "RS256" {
		t.Errorf("header = %v", h)
	}
	if kids := tn.PublishedKIDs(); !slices.Equal(kids, []string{tn.CurrentKID()}) {
		t.Errorf("PublishedKIDs() = %v", kids)
	}
	kidRx := map[string]string{
		ProviderAuth0:  `[A-Za-z0-9_-]{22}`,
		ProviderWorkOS: `sso_oidc_key_pair_` + ulid,
		ProviderStytch: `jwk-test-` + uuid,
	}[tn.Provider()]
	if !regexp.MustCompile(`^` + kidRx + `$`).MatchString(tn.CurrentKID()) {
		t.Errorf("kid %q does not look like a %s kid", tn.CurrentKID(), tn.Provider())
	}

	// The JWK carries what verifiers look at.
	_, hdr, body := mustGet(t, tn.JWKSURL())
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("JWKS Content-Type %q", ct)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	k := set.Keys[0]
	if k["kty"] != "RSA" || k["use"] != "sig" || k["alg"] != "RS256" || k["e"] != "AQAB" || len(k["n"].(string)) != 342 {
		t.Errorf("JWK = %v", k)
	}
}

func testDiscovery(t *testing.T, tn *Tenant) {
	paths := []string{"/.well-known/openid-configuration"}
	if tn.Provider() == ProviderWorkOS {
		paths = append(paths, "/.well-known/oauth-authorization-server")
		if tn.MetadataURL() != tn.URL()+"/.well-known/oauth-authorization-server" {
			t.Errorf("MetadataURL() = %q", tn.MetadataURL())
		}
	} else {
		if tn.MetadataURL() != tn.URL()+"/.well-known/openid-configuration" {
			t.Errorf("MetadataURL() = %q", tn.MetadataURL())
		}
		if code, _, _ := mustGet(t, tn.URL()+"/.well-known/oauth-authorization-server"); code != http.StatusNotFound {
			t.Errorf("oauth-authorization-server: %d, want 404", code)
		}
	}
	for _, p := range paths {
		code, _, body := mustGet(t, tn.URL()+p)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", p, code)
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if doc["issuer"] != tn.Issuer() || doc["jwks_uri"] != tn.JWKSURL() {
			t.Errorf("%s: issuer %v jwks_uri %v", p, doc["issuer"], doc["jwks_uri"])
		}
		for _, ep := range []string{"authorization_endpoint", "token_endpoint"} {
			if s, _ := doc[ep].(string); !strings.HasPrefix(s, tn.URL()+"/") {
				t.Errorf("%s: %s = %v", p, ep, doc[ep])
			}
		}
		if _, ok := doc["response_types_supported"]; !ok {
			t.Errorf("%s: no response_types_supported", p)
		}
	}
}

func testLayout(t *testing.T, tn *Tenant) {
	const api = "https://example.com/api"
	iss := tn.Issuer()
	now := time.Now().Unix()
	type tc struct {
		name string
		c    Claims
		want map[string]any // besides iss, iat, exp (checked below)
	}
	var cases []tc
	switch tn.Provider() {
	case ProviderAuth0:
		cases = []tc{
			{"openid", Claims{
				Sub: "auth0|123456", Audience: []string{api}, Scopes: []string{"openid", "profile", "read:patients"},
				Permissions: []string{"read:patients"}, ClientID: "my_client_id", OrgID: "org_abc", Roles: []string{"ignored"},
			}, map[string]any{
				"sub": "auth0|123456", "aud": []string{api, iss + "userinfo"}, "azp": "my_client_id",
				"scope": "openid profile read:patients", "permissions": []string{"read:patients"}, "org_id": "org_abc",
			}},
			{"one audience is a string", Claims{Audience: []string{api}, Scopes: []string{"read:x"}},
				map[string]any{"sub": rx(`auth0\|[0-9a-f]{24}`), "aud": api, "scope": "read:x"}},
			{"two audiences", Claims{Audience: []string{api, "https://other"}, Permissions: []string{}},
				map[string]any{"sub": rx(`auth0\|[0-9a-f]{24}`), "aud": []string{api, "https://other"}, "permissions": []string{}}},
			{"userinfo not doubled", Claims{Audience: []string{api, iss + "userinfo"}, Scopes: []string{"openid"}},
				map[string]any{"sub": rx(`auth0\|.*`), "aud": []string{api, iss + "userinfo"}, "scope": "openid"}},
			{"no audience", Claims{}, map[string]any{"sub": rx(`auth0\|.*`)}},
		}
	case ProviderWorkOS:
		cases = []tc{
			{"mcp", Claims{
				Sub: "user_01JQ", Audience: []string{"https://mcp.example.com/mcp"}, Scopes: []string{"openid", "tools:read"},
				OrgID: "org_01HR", ClientID: "client_01",
			}, map[string]any{
				"sub": "user_01JQ", "aud": "https://mcp.example.com/mcp", "scope": "openid tools:read",
				"org_id": "org_01HR", "client_id": "client_01", "sid": rx(`session_` + ulid), "jti": rx(ulid),
			}},
			{"session with roles and permissions", Claims{
				Audience: []string{api}, Roles: []string{"admin", "member"}, Permissions: []string{"widgets:write"},
			}, map[string]any{
				"sub": rx(`user_` + ulid), "aud": api, "role": "admin", "roles": []string{"admin", "member"},
				"permissions": []string{"widgets:write"}, "sid": rx(`session_` + ulid), "jti": rx(ulid),
			}},
		}
	case ProviderStytch:
		cases = []tc{
			{"b2b", Claims{
				Audience: []string{"project-test-1"}, Scopes: []string{"openid", "read:users"}, ClientID: "connected-app-test-1",
				OrgID: "organization-test-1", Roles: []string{"stytch_member", "admin"}, Permissions: []string{"ignored"},
			}, map[string]any{
				"sub": rx(`member-test-` + uuid), "aud": []string{"project-test-1"}, "scope": "openid read:users",
				"client_id": "connected-app-test-1", "nbf": rx(".*"),
				StytchOrganizationClaim: map[string]any{"organization_id": "organization-test-1", "slug": "organization-test-1"},
				StytchSessionClaim:      map[string]any{"roles": []string{"stytch_member", "admin"}},
			}},
			{"consumer", Claims{Audience: []string{"project-test-1"}},
				map[string]any{"sub": rx(`user-test-` + uuid), "aud": []string{"project-test-1"}, "nbf": rx(".*")}},
		}
	}
	// Provider-neutral knobs.
	cases = append(cases,
		tc{"extra overrides and removes", Claims{Sub: "s", Extra: map[string]any{"iss": "https://evil/", "custom": 1, "nbf": nil, "sid": nil, "jti": nil}},
			map[string]any{"sub": "s", "custom": 1}},
		tc{"not before", Claims{Sub: "s", NotBefore: time.Unix(now+600, 0), Extra: map[string]any{"sid": nil, "jti": nil}},
			map[string]any{"sub": "s", "nbf": now + 600}},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := payload(t, tn.Token(c.c))
			want := map[string]any{"iss": iss, "iat": rx(".*"), "exp": rx(".*")}
			if c.c.Extra["iss"] != nil {
				want["iss"] = c.c.Extra["iss"]
			}
			for k, v := range c.want {
				if k == "nbf" && v == rx(".*") {
					// stytch default: nbf = iat.
					if got["nbf"] != got["iat"] {
						t.Errorf("nbf %v != iat %v", got["nbf"], got["iat"])
					}
					delete(got, "nbf")
					continue
				}
				want[k] = v
			}
			iat, _ := got["iat"].(float64)
			exp, _ := got["exp"].(float64)
			if d := int64(iat) - now; d < -5 || d > 5 {
				t.Errorf("iat %v, now %d", got["iat"], now)
			}
			if exp-iat != 3600 {
				t.Errorf("exp - iat = %v, want 3600", exp-iat)
			}
			delete(got, "iat")
			delete(got, "exp")
			delete(want, "iat")
			delete(want, "exp")
			checkClaims(t, got, want)
		})
	}

	t.Run("ttl and issued at", func(t *testing.T) {
		iat := time.Unix(now-7200, 0)
		got := payload(t, tn.Token(Claims{IssuedAt: iat, TTL: 10 * time.Minute}))
		if got["iat"] != float64(now-7200) || got["exp"] != float64(now-7200+600) {
			t.Errorf("iat %v exp %v", got["iat"], got["exp"])
		}
		got = payload(t, tn.Token(Claims{TTL: -time.Minute}))
		if exp := got["exp"].(float64); int64(exp) >= time.Now().Unix() {
			t.Errorf("negative TTL: exp %v is not in the past", exp)
		}
	})
	t.Run("default sub is stable", func(t *testing.T) {
		a := payload(t, tn.Token(Claims{}))["sub"]
		b := payload(t, tn.Token(Claims{}))["sub"]
		if a != b {
			t.Errorf("default sub changed: %v, %v", a, b)
		}
	})
}

func TestRotation(t *testing.T) {
	t.Parallel()
	tn := NewTenant(t, ProviderAuth0)
	aud := "https://api.example"
	opts := []jwt.ParserOption{jwt.WithIssuer(tn.Issuer()), jwt.WithAudience(aud)}
	kf := newKeyfunc(t, tn)

	oldKID := tn.CurrentKID()
	oldTok := tn.Token(Claims{Audience: []string{aud}})
	if _, err := verify(kf, oldTok, opts...); err != nil {
		t.Fatalf("old token before rotation: %v", err)
	}

	tn.Rotate()
	newKID := tn.CurrentKID()
	if newKID == oldKID {
		t.Fatal("Rotate kept the kid")
	}
	if got := tn.PublishedKIDs(); !slices.Equal(got, []string{oldKID, newKID}) {
		t.Fatalf("PublishedKIDs() = %v", got)
	}
	if got := jwksKIDs(t, tn); !slices.Equal(got, []string{oldKID, newKID}) {
		t.Fatalf("JWKS kids after Rotate = %v", got)
	}
	newTok := tn.Token(Claims{Audience: []string{aud}})
	if h := header(t, newTok); h["kid"] != newKID || h["alg"] != "RS256" {
		t.Fatalf("new token header %v", h)
	}
	// keyfunc refreshes on the unknown kid and then knows both keys.
	if _, err := verify(kf, newTok, opts...); err != nil {
		t.Fatalf("new token after rotation: %v", err)
	}
	if _, err := verify(kf, oldTok, opts...); err != nil {
		t.Fatalf("old token after rotation: %v", err)
	}

	tn.RetireOldKeys()
	if got := jwksKIDs(t, tn); !slices.Equal(got, []string{newKID}) {
		t.Fatalf("JWKS kids after RetireOldKeys = %v", got)
	}
	kf2 := newKeyfunc(t, tn)
	if _, err := verify(kf2, newTok, opts...); err != nil {
		t.Fatalf("new token after retire: %v", err)
	}
	if _, err := verify(kf2, oldTok, opts...); err == nil {
		t.Fatal("old token verified after its key was retired")
	}

	// An ES256 key joins the set and signs from then on.
	tn.AddKey("ES256")
	esKID := tn.CurrentKID()
	esTok := tn.Token(Claims{Audience: []string{aud}})
	if h := header(t, esTok); h["alg"] != "ES256" || h["kid"] != esKID {
		t.Fatalf("ES256 token header %v", h)
	}
	_, _, body := mustGet(t, tn.JWKSURL())
	if !strings.Contains(string(body), `"crv":"P-256"`) || len(jwksKIDs(t, tn)) != 2 {
		t.Errorf("JWKS after AddKey(ES256): %s", body)
	}
	if _, err := verify(newKeyfunc(t, tn), esTok, opts...); err != nil {
		t.Fatalf("ES256 token: %v", err)
	}
	tn.Rotate() // same alg as current: ES256
	if h := header(t, tn.Token(Claims{})); h["alg"] != "ES256" || h["kid"] == esKID {
		t.Errorf("after Rotate of an ES256 key: header %v", h)
	}
}

func TestBadTokens(t *testing.T) {
	t.Parallel()
	tn := NewTenant(t, ProviderWorkOS)
	aud := "https://mcp.example.com/mcp"
	claims := tn.Layout(Claims{Audience: []string{aud}})
	opts := []jwt.ParserOption{jwt.WithIssuer(tn.Issuer()), jwt.WithAudience(aud)}

	pub := func() any {
		b, _ := pem.Decode(tn.PublicKeyPEM())
		if b == nil || b.Type != "PUBLIC KEY" {
			t.Fatalf("PublicKeyPEM: %q", tn.PublicKeyPEM())
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}()

	t.Run("genuine signatures with other algs", func(t *testing.T) {
		for _, alg := range []string{"RS256", "RS384", "RS512", "PS256"} {
			tok := tn.Sign(map[string]any{"alg": alg}, claims)
			if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil },
				append(opts, jwt.WithValidMethods([]string{alg}))...); err != nil {
				t.Errorf("%s: %v", alg, err)
			}
		}
	})

	kf := newKeyfunc(t, tn)
	t.Run("sign defaults equal Token", func(t *testing.T) {
		tok := tn.Sign(nil, claims)
		if h := header(t, tok); h["alg"] != "RS256" || h["kid"] != tn.CurrentKID() || h["typ"] != "JWT" {
			t.Errorf("header %v", h)
		}
		if _, err := verify(kf, tok, opts...); err != nil {
			t.Errorf("verify: %v", err)
		}
	})
	t.Run("unpublished kid", func(t *testing.T) {
		tok := tn.Sign(map[string]any{"kid": "not-published"}, claims)
		if _, err := verify(kf, tok, opts...); err == nil {
			t.Error("verified")
		}
	})
	t.Run("header overrides and removals", func(t *testing.T) {
		tok := tn.Sign(map[string]any{"typ": "at+jwt", "kid": nil}, claims)
		if h := header(t, tok); h["typ"] != "at+jwt" || h["kid"] != nil || h["alg"] != "RS256" {
			t.Errorf("header %v", h)
		}
	})
	t.Run("hs256 with the public key", func(t *testing.T) {
		tok := tn.Sign(map[string]any{"alg": "HS256"}, claims)
		// A verifier that trusts the header's alg and uses the PEM as the
		// HMAC secret would accept it: it is the real attack token.
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return tn.PublicKeyPEM(), nil }, opts...); err != nil {
			t.Fatalf("naive HMAC check: %v", err)
		}
		if _, err := verify(kf, tok, opts...); err == nil {
			t.Error("keyfunc accepted the HS256 token")
		}
	})
	t.Run("none", func(t *testing.T) {
		tok := tn.Sign(map[string]any{"alg": "none"}, claims)
		if !strings.HasSuffix(tok, ".") || strings.Count(tok, ".") != 2 {
			t.Fatalf("none token %q", tok)
		}
		if _, err := verify(kf, tok, opts...); err == nil {
			t.Error("verified")
		}
	})
	t.Run("expired", func(t *testing.T) {
		tok := tn.Token(Claims{Audience: []string{aud}, TTL: -time.Minute})
		if _, err := verify(kf, tok, opts...); !errors.Is(err, jwt.ErrTokenExpired) {
			t.Errorf("err = %v, want expired", err)
		}
	})
	t.Run("not yet valid", func(t *testing.T) {
		tok := tn.Token(Claims{Audience: []string{aud}, NotBefore: time.Now().Add(time.Hour)})
		if _, err := verify(kf, tok, opts...); !errors.Is(err, jwt.ErrTokenNotValidYet) {
			t.Errorf("err = %v, want not valid yet", err)
		}
	})
}

func TestOutages(t *testing.T) {
	t.Parallel()
	tn := NewTenant(t, ProviderStytch)
	kid := tn.CurrentKID()

	type result struct {
		code int
		ct   string
		body []byte
	}
	fetch := func(url string) result {
		code, h, body := mustGet(t, url)
		return result{code, h.Get("Content-Type"), body}
	}
	isJSON := func(b []byte) bool { return json.Valid(b) }

	cases := []struct {
		o         Outage
		checkJWKS func(r result) bool
		checkMeta func(r result) bool
	}{
		{OutageNone,
			func(r result) bool {
				return r.code == 200 && strings.Contains(string(r.body), kid) && len(r.body) < 4096
			},
			func(r result) bool { return r.code == 200 && strings.Contains(string(r.body), `"issuer"`) }},
		{OutageDown,
			func(r result) bool { return r.code == 503 },
			func(r result) bool { return r.code == 503 }},
		{OutageGarbage,
			func(r result) bool { return r.code == 200 && !isJSON(r.body) && len(r.body) > 0 },
			func(r result) bool { return r.code == 200 && !isJSON(r.body) }},
		{OutageEmpty,
			func(r result) bool { return r.code == 200 && string(r.body) == `{"keys":[]}` },
			func(r result) bool { return r.code == 200 && string(r.body) == `{}` }},
		{OutageOversized,
			func(r result) bool {
				var set struct {
					Keys []map[string]any `json:"keys"`
				}
				return r.code == 200 && len(r.body) > 2<<20 && json.Unmarshal(r.body, &set) == nil &&
					len(set.Keys) == 1 && set.Keys[0]["kid"] == kid
			},
			func(r result) bool { return r.code == 200 && len(r.body) > 2<<20 && isJSON(r.body) }},
	}
	for _, c := range cases {
		t.Run(c.o.String(), func(t *testing.T) {
			tn.SetOutage(c.o)
			defer tn.SetOutage(OutageNone)
			before := tn.JWKSRequests()
			if r := fetch(tn.JWKSURL()); !c.checkJWKS(r) {
				t.Errorf("JWKS: %d %q %.200q (%d bytes)", r.code, r.ct, r.body, len(r.body))
			}
			if r := fetch(tn.MetadataURL()); !c.checkMeta(r) {
				t.Errorf("metadata: %d %q %.200q (%d bytes)", r.code, r.ct, r.body, len(r.body))
			}
			if n := tn.JWKSRequests() - before; n != 1 {
				t.Errorf("JWKSRequests grew by %d, want 1", n)
			}
		})
	}

	t.Run("hang", func(t *testing.T) {
		tn.SetOutage(OutageHang)
		defer tn.SetOutage(OutageNone)
		before := tn.JWKSRequests()

		// The client gives up.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, _, _, err := get(t, ctx, tn.JWKSURL()); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("hung GET: err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("hung GET took %v", d)
		}
		if _, _, _, err := get(t, ctx, tn.MetadataURL()); err == nil {
			t.Error("hung metadata GET returned")
		}

		// Lifting the outage serves the hung request.
		done := make(chan result, 1)
		go func() {
			code, h, body, err := get(t, context.Background(), tn.JWKSURL())
			if err != nil {
				code = -1
			}
			done <- result{code, h.Get("Content-Type"), body}
		}()
		for tn.JWKSRequests()-before < 2 {
			time.Sleep(time.Millisecond)
		}
		select {
		case r := <-done:
			t.Fatalf("returned while hung: %d", r.code)
		case <-time.After(20 * time.Millisecond):
		}
		tn.SetOutage(OutageNone)
		select {
		case r := <-done:
			if r.code != 200 || !strings.Contains(string(r.body), kid) {
				t.Errorf("released request: %d %q", r.code, r.body)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("SetOutage(OutageNone) did not release the hung request")
		}
		if n := tn.JWKSRequests() - before; n != 2 {
			t.Errorf("JWKSRequests grew by %d, want 2", n)
		}
	})

	t.Run("requests are counted", func(t *testing.T) {
		before := tn.JWKSRequests()
		for range 5 {
			fetch(tn.JWKSURL())
		}
		fetch(tn.MetadataURL()) // not counted
		if n := tn.JWKSRequests() - before; n != 5 {
			t.Errorf("JWKSRequests grew by %d, want 5", n)
		}
	})
}

// A request hung when the tenant shuts down is released (Cleanup does not
// block on it).
func TestHangReleasedOnClose(t *testing.T) {
	t.Parallel()
	done := make(chan error, 1)
	t.Run("tenant", func(t *testing.T) {
		tn := NewTenant(t, ProviderAuth0)
		tn.SetOutage(OutageHang)
		go func() {
			resp, err := http.Get(tn.JWKSURL())
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					err = errors.New("unexpected status " + resp.Status)
				}
			}
			done <- err
		}()
		for tn.JWKSRequests() == 0 {
			time.Sleep(time.Millisecond)
		}
	})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("released request: %v, want 503", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("hung request not released by tenant shutdown")
	}
}

func TestOutageString(t *testing.T) {
	if OutageHang.String() != "hang" || Outage(42).String() != "Outage(42)" {
		t.Errorf("String: %q %q", OutageHang.String(), Outage(42).String())
	}
}
