// Package idptest emulates the identity providers toolgate trusts (Auth0,
// WorkOS AuthKit, Stytch) for tests: a Tenant is a loopback HTTP server that
// publishes the provider's discovery document and JWKS at the provider's
// paths, mints access tokens laid out the way that provider lays them out,
// rotates and retires keys, and can simulate JWKS outages.
//
// A typical test:
//
//	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
//	tok := tn.Token(idptest.Claims{Audience: []string{"https://api.example"}, Scopes: []string{"read:x"}})
//	// configure the code under test with tn.Issuer() and tn.JWKSURL(), then present tok.
//
// Every method is safe for concurrent use, but the methods that can fail the
// test (NewTenant, Token, Sign, AddKey, ...) call t.Fatalf and so belong on
// the test's goroutine.
package idptest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Provider presets accepted by NewTenant.
const (
	ProviderAuth0  = "auth0"
	ProviderWorkOS = "workos"
	ProviderStytch = "stytch"
)

// preset is what differs between providers at the HTTP level.
type preset struct {
	jwksPath      string
	metadataPaths []string // first one is the primary metadata document
	trailingSlash bool     // issuer is URL + "/"
}

var presets = map[string]preset{
	ProviderAuth0: {
		jwksPath:      "/.well-known/jwks.json",
		metadataPaths: []string{"/.well-known/openid-configuration"},
		trailingSlash: true,
	},
	ProviderWorkOS: {
		jwksPath:      "/oauth2/jwks",
		metadataPaths: []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"},
	},
	ProviderStytch: {
		jwksPath:      "/.well-known/jwks.json",
		metadataPaths: []string{"/.well-known/openid-configuration"},
	},
}

// Outage makes the JWKS endpoint and the discovery documents misbehave; see
// SetOutage.
type Outage int

const (
	// OutageNone serves normally.
	OutageNone Outage = iota
	// OutageDown answers 503 Service Unavailable.
	OutageDown
	// OutageGarbage answers 200 with an HTML (non-JSON) body.
	OutageGarbage
	// OutageEmpty answers 200 with {"keys":[]} (discovery: {}).
	OutageEmpty
	// OutageOversized answers 200 with the normal JSON document plus an
	// "x_padding" member that takes the body over 2 MiB (OversizedPadding
	// bytes of padding). It is streamed without Content-Length, so only a
	// limit on the bytes read catches it; a client without one sees a valid
	// JWKS holding the real keys.
	OutageOversized
	// OutageHang holds the request until the client gives up (its context
	// ends), the outage is changed by SetOutage (the request is then served
	// under the new mode), or the tenant is closed (503).
	OutageHang
)

// OversizedPadding is how many padding bytes OutageOversized adds.
const OversizedPadding = 2 << 20

func (o Outage) String() string {
	switch o {
	case OutageNone:
		return "none"
	case OutageDown:
		return "down"
	case OutageGarbage:
		return "garbage"
	case OutageEmpty:
		return "empty"
	case OutageOversized:
		return "oversized"
	case OutageHang:
		return "hang"
	}
	return "Outage(" + strconv.Itoa(int(o)) + ")"
}

// Tenant is one emulated identity-provider tenant.
type Tenant struct {
	t        testing.TB
	provider string
	preset   preset
	srv      *httptest.Server
	closed   chan struct{} // closed when the tenant shuts down

	defaultSub       string // auth0|..., user_01..., user-test-...
	defaultMemberSub string // stytch B2B: member-test-...

	mu      sync.Mutex
	keys    []*signingKey // published keys; the last is current
	outage  Outage
	release chan struct{} // closed (and replaced) by SetOutage to wake hung requests

	jwksRequests atomic.Int64
}

// NewTenant starts a tenant of provider ("auth0", "workos" or "stytch") on
// 127.0.0.1 with one RS256 RSA-2048 signing key. It is shut down by
// t.Cleanup; requests hung by OutageHang are released first.
func NewTenant(t testing.TB, provider string) *Tenant {
	t.Helper()
	p, ok := presets[provider]
	if !ok {
		t.Fatalf("idptest: unknown provider %q (want %q, %q or %q)", provider, ProviderAuth0, ProviderWorkOS, ProviderStytch)
	}
	k, err := newSigningKey(provider, "RS256")
	if err != nil {
		t.Fatalf("idptest: %v", err)
	}
	tn := &Tenant{
		t:        t,
		provider: provider,
		preset:   p,
		closed:   make(chan struct{}),
		keys:     []*signingKey{k},
		release:  make(chan struct{}),
	}
	switch provider {
	case ProviderAuth0:
		tn.defaultSub = "auth0|" + hexString(12)
	case ProviderWorkOS:
		tn.defaultSub = "user_" + newULID()
	case ProviderStytch:
		tn.defaultSub = "user-test-" + newUUID()
		tn.defaultMemberSub = "member-test-" + newUUID()
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+p.jwksPath, func(w http.ResponseWriter, r *http.Request) {
		tn.jwksRequests.Add(1)
		tn.serve(w, r, tn.jwksDoc, `{"keys":[]}`)
	})
	for _, path := range p.metadataPaths {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			tn.serve(w, r, tn.metadataDoc, `{}`)
		})
	}
	tn.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(tn.closed)
		tn.srv.Close()
	})
	return tn
}

// Provider is the preset the tenant was created with.
func (tn *Tenant) Provider() string { return tn.provider }

// URL is the base URL of the tenant's server, http://127.0.0.1:port, with no
// trailing slash.
func (tn *Tenant) URL() string { return tn.srv.URL }

// Issuer is the iss of the tenant's tokens and discovery documents: URL()+"/"
// for auth0, URL() for workos and stytch.
func (tn *Tenant) Issuer() string {
	if tn.preset.trailingSlash {
		return tn.srv.URL + "/"
	}
	return tn.srv.URL
}

// JWKSURL is the provider's JWKS address: /.well-known/jwks.json for auth0
// and stytch, /oauth2/jwks for workos.
func (tn *Tenant) JWKSURL() string { return tn.srv.URL + tn.preset.jwksPath }

// MetadataURL is the provider's primary discovery document:
// /.well-known/oauth-authorization-server for workos (which also serves
// /.well-known/openid-configuration), /.well-known/openid-configuration for
// auth0 and stytch.
func (tn *Tenant) MetadataURL() string { return tn.srv.URL + tn.preset.metadataPaths[0] }

// AddKey adds a new signing key for alg (RS256, RS384, RS512, PS256, PS384,
// PS512: RSA-2048; ES256: P-256) and makes it current. The previous keys stay
// published, as during a real rotation.
func (tn *Tenant) AddKey(alg string) {
	tn.t.Helper()
	k, err := newSigningKey(tn.provider, alg)
	if err != nil {
		tn.t.Fatalf("idptest: AddKey: %v", err)
	}
	tn.mu.Lock()
	tn.keys = append(tn.keys, k)
	tn.mu.Unlock()
}

// Rotate adds a new current key with the current key's algorithm.
func (tn *Tenant) Rotate() {
	tn.t.Helper()
	tn.AddKey(tn.current().alg)
}

// RetireOldKeys unpublishes every key but the current one.
func (tn *Tenant) RetireOldKeys() {
	tn.mu.Lock()
	tn.keys = tn.keys[len(tn.keys)-1:]
	tn.mu.Unlock()
}

// CurrentKID is the kid of the key that Token and Sign use.
func (tn *Tenant) CurrentKID() string { return tn.current().kid }

// PublishedKIDs are the kids in the JWKS, oldest first (the last is current).
func (tn *Tenant) PublishedKIDs() []string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	kids := make([]string, len(tn.keys))
	for i, k := range tn.keys {
		kids[i] = k.kid
	}
	return kids
}

// PublicKeyPEM is the PKIX PEM ("-----BEGIN PUBLIC KEY-----", trailing
// newline included) of the current key: the HMAC secret of the classic
// alg-confusion attack, which Sign builds for header alg HS256.
func (tn *Tenant) PublicKeyPEM() []byte {
	tn.t.Helper()
	p, err := tn.current().publicPEM()
	if err != nil {
		tn.t.Fatalf("idptest: %v", err)
	}
	return p
}

func (tn *Tenant) current() *signingKey {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.keys[len(tn.keys)-1]
}

// SetOutage switches the JWKS endpoint and the discovery documents to
// misbehave as o says, or back to normal with OutageNone. Requests hung by
// OutageHang are re-served under the new mode.
func (tn *Tenant) SetOutage(o Outage) {
	tn.mu.Lock()
	tn.outage = o
	close(tn.release)
	tn.release = make(chan struct{})
	tn.mu.Unlock()
}

// JWKSRequests is how many requests reached the JWKS endpoint, whatever the
// outcome (hung ones included). Discovery requests are not counted.
func (tn *Tenant) JWKSRequests() int { return int(tn.jwksRequests.Load()) }

// serve writes doc() or, under an outage, what the outage says; empty is the
// body of OutageEmpty.
func (tn *Tenant) serve(w http.ResponseWriter, r *http.Request, doc func() ([]byte, error), empty string) {
	for {
		tn.mu.Lock()
		o, release := tn.outage, tn.release
		tn.mu.Unlock()

		switch o {
		case OutageHang:
			select {
			case <-r.Context().Done():
				return
			case <-tn.closed:
				http.Error(w, "idptest: tenant closed", http.StatusServiceUnavailable)
				return
			case <-release:
				continue
			}
		case OutageDown:
			http.Error(w, "upstream connect error or disconnect/reset before headers", http.StatusServiceUnavailable)
		case OutageGarbage:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte("<html><head><title>Maintenance</title></head><body><h1>We'll be right back</h1></body></html>\n"))
		case OutageEmpty:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(empty))
		default: // OutageNone, OutageOversized
			body, err := doc()
			if err != nil {
				http.Error(w, "idptest: "+err.Error(), http.StatusInternalServerError)
				return
			}
			if o == OutageOversized {
				body = pad(body)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}
		return
	}
}

// pad adds an "x_padding" member of OversizedPadding bytes to the JSON object
// doc.
func pad(doc []byte) []byte {
	out := make([]byte, 0, len(doc)+OversizedPadding+32)
	out = append(out, doc[:len(doc)-1]...) // drop the closing brace
	if len(doc) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"x_padding":"`...)
	out = append(out, strings.Repeat("A", OversizedPadding)...)
	out = append(out, `"}`...)
	return out
}

func (tn *Tenant) jwksDoc() ([]byte, error) {
	tn.mu.Lock()
	keys := append([]*signingKey(nil), tn.keys...)
	tn.mu.Unlock()
	set := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		j, err := k.jwk()
		if err != nil {
			return nil, err
		}
		set = append(set, j)
	}
	return json.Marshal(map[string]any{"keys": set})
}

func (tn *Tenant) metadataDoc() ([]byte, error) {
	tn.mu.Lock()
	algs := []string{}
	for _, k := range tn.keys {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	tn.mu.Unlock()

	u := tn.srv.URL
	m := map[string]any{
		"issuer":                                tn.Issuer(),
		"jwks_uri":                              tn.JWKSURL(),
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": algs,
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
	}
	switch tn.provider {
	case ProviderAuth0:
		m["authorization_endpoint"] = u + "/authorize"
		m["token_endpoint"] = u + "/oauth/token"
		m["userinfo_endpoint"] = u + "/userinfo"
		m["registration_endpoint"] = u + "/oidc/register"
		m["revocation_endpoint"] = u + "/oauth/revoke"
	case ProviderWorkOS:
		m["authorization_endpoint"] = u + "/oauth2/authorize"
		m["token_endpoint"] = u + "/oauth2/token"
		m["userinfo_endpoint"] = u + "/oauth2/userinfo"
		m["registration_endpoint"] = u + "/oauth2/register"
		m["introspection_endpoint"] = u + "/oauth2/introspection"
	case ProviderStytch:
		m["authorization_endpoint"] = u + "/oauth/authorize"
		m["token_endpoint"] = u + "/v1/oauth2/token"
		m["userinfo_endpoint"] = u + "/v1/oauth2/userinfo"
		m["registration_endpoint"] = u + "/v1/oauth2/register"
	}
	return json.Marshal(m)
}
