package idp

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/toolgate/toolgate/idp/idptest"
)

// wantPrincipal is what a normalisation row expects; Sub, Iss, Provider,
// Issuer and Claims are checked against the token itself.
type wantPrincipal struct {
	ClientID    string
	OrgID       string
	Scopes      []string
	Permissions []string
	Roles       []string
}

func checkPrincipal(t *testing.T, p *Principal, want wantPrincipal) {
	t.Helper()
	got := wantPrincipal{p.ClientID, p.OrgID, p.Scopes, p.Permissions, p.Roles}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("principal\n got %+v\nwant %+v", got, want)
	}
	checkNeverNull(t, p)
}

// checkNeverNull: the JSON policies see has every field, lists as [] and
// strings as "", never null or absent (docs/policy-contract.md, "The
// principal").
func checkNeverNull(t *testing.T, p *Principal) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scopes", "permissions", "roles"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %s in JSON, want an array: %s", k, jsonOf(m[k]), b)
		}
	}
	for _, k := range []string{"sub", "iss", "client_id", "provider", "org_id"} {
		if _, ok := m[k].(string); !ok {
			t.Errorf("%s is %s in JSON, want a string: %s", k, jsonOf(m[k]), b)
		}
	}
	if _, ok := m["claims"].(map[string]any); !ok {
		t.Errorf("claims is %s in JSON, want an object", jsonOf(m["claims"]))
	}
	if _, ok := m["Issuer"]; ok {
		t.Errorf("the Issuer label leaks into the policy input: %s", b)
	}
	if len(m) != 9 {
		t.Errorf("principal JSON has %d members, want 9: %s", len(m), b)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// normalisationTable runs tokens laid out as each provider lays them out
// through Verify and checks input.principal (part of TestProviderTokens,
// which owns the tenants and the verifier).
func normalisationTable(t *testing.T, v *Verifier, a0, wo, st *idptest.Tenant) {
	aud := []string{testAud}
	tests := []struct {
		name string
		tn   *idptest.Tenant
		c    idptest.Claims
		want wantPrincipal
	}{
		{
			name: "auth0 RBAC token: permissions, scope, azp as client_id, org_id",
			tn:   a0,
			c:    idptest.Claims{Audience: aud, Scopes: []string{"openid", "read:patients", "tools:add"}, Permissions: []string{"read:patients", "tools:add"}, OrgID: "org_abc123", ClientID: "my_client_id"},
			want: wantPrincipal{ClientID: "my_client_id", OrgID: "org_abc123", Scopes: []string{"openid", "read:patients", "tools:add"}, Permissions: []string{"read:patients", "tools:add"}, Roles: []string{}},
		},
		{
			name: "auth0 RFC 9068 token: client_id wins over azp",
			tn:   a0,
			c:    idptest.Claims{Audience: aud, ClientID: "azp_client", Extra: map[string]any{"client_id": "rfc9068_client"}},
			want: wantPrincipal{ClientID: "rfc9068_client", Scopes: []string{}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "auth0 RBAC token with no permissions: permissions is []",
			tn:   a0,
			c:    idptest.Claims{Audience: aud, Permissions: []string{}},
			want: wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "auth0 roles in a namespaced custom claim are not roles (but are in claims)",
			tn:   a0,
			c:    idptest.Claims{Audience: aud, Extra: map[string]any{"https://example.com/roles": []string{"admin"}}},
			want: wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "auth0 machine-to-machine token: scope only, sub <client>@clients",
			tn:   a0,
			c:    idptest.Claims{Audience: aud, Sub: "m2m_client@clients", Scopes: []string{"tools:list"}, ClientID: "m2m_client"},
			want: wantPrincipal{ClientID: "m2m_client", Scopes: []string{"tools:list"}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "workos session token: role and roles unioned, permissions, org_id, client_id",
			tn:   wo,
			c:    idptest.Claims{Audience: aud, Scopes: []string{"openid", "tools:read"}, Roles: []string{"admin", "member"}, Permissions: []string{"widgets:read", "widgets:write"}, OrgID: "org_01HRDMSY", ClientID: "client_01JQ"},
			want: wantPrincipal{ClientID: "client_01JQ", OrgID: "org_01HRDMSY", Scopes: []string{"openid", "tools:read"}, Permissions: []string{"widgets:read", "widgets:write"}, Roles: []string{"admin", "member"}},
		},
		{
			name: "workos role not listed in roles is added first",
			tn:   wo,
			c:    idptest.Claims{Audience: aud, Extra: map[string]any{"role": "owner", "roles": []string{"member", "owner"}}},
			want: wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{"owner", "member"}},
		},
		{
			name: "workos role alone",
			tn:   wo,
			c:    idptest.Claims{Audience: aud, Extra: map[string]any{"role": "admin"}},
			want: wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{"admin"}},
		},
		{
			name: "workos MCP access token: no permissions or roles",
			tn:   wo,
			c:    idptest.Claims{Audience: aud, Scopes: []string{"openid", "tools:read"}, OrgID: "org_01HR", ClientID: "client_01"},
			want: wantPrincipal{ClientID: "client_01", OrgID: "org_01HR", Scopes: []string{"openid", "tools:read"}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "stytch B2B token: org from https://stytch.com/organization, roles from https://stytch.com/session",
			tn:   st,
			c:    idptest.Claims{Audience: aud, Scopes: []string{"openid", "read:okrs", "manage:krs"}, OrgID: "organization-test-07971B06", Roles: []string{"stytch_member", "okr_admin"}, ClientID: "connected-app-test-1"},
			want: wantPrincipal{ClientID: "connected-app-test-1", OrgID: "organization-test-07971B06", Scopes: []string{"openid", "read:okrs", "manage:krs"}, Permissions: []string{}, Roles: []string{"stytch_member", "okr_admin"}},
		},
		{
			name: "stytch consumer token: scope and client_id only",
			tn:   st,
			c:    idptest.Claims{Audience: aud, Scopes: []string{"openid", "email", "profile"}, ClientID: "connected-app-test-2"},
			want: wantPrincipal{ClientID: "connected-app-test-2", Scopes: []string{"openid", "email", "profile"}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "scp array is unioned with scope, without duplicates",
			tn:   st,
			c:    idptest.Claims{Audience: aud, Scopes: []string{"read:okrs", "openid"}, Extra: map[string]any{"scp": []string{"openid", "write:okrs"}}},
			want: wantPrincipal{Scopes: []string{"read:okrs", "openid", "write:okrs"}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "scp array alone gives the scopes",
			tn:   a0,
			c:    idptest.Claims{Audience: aud, Extra: map[string]any{"scp": []string{"a", "b"}}},
			want: wantPrincipal{Scopes: []string{"a", "b"}, Permissions: []string{}, Roles: []string{}},
		},
		{
			name: "minimal token: every missing field is empty, never nil",
			tn:   a0,
			c:    idptest.Claims{Audience: aud},
			want: wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.tn.Token(tc.c)
			_, payload := segments(t, tok)
			p := mustVerify(t, v, tok)
			if p.Sub != payload["sub"] || p.Iss != tc.tn.Issuer() || p.Provider != tc.tn.Provider() || p.Issuer != tc.tn.Provider() {
				t.Errorf("sub=%q iss=%q provider=%q issuer=%q", p.Sub, p.Iss, p.Provider, p.Issuer)
			}
			checkPrincipal(t, p, tc.want)
			// claims holds every claim of the token, unchanged.
			if !reflect.DeepEqual(p.Claims, payload) {
				t.Errorf("claims\n got %v\nwant %v", p.Claims, payload)
			}
		})
	}
}

// TestNormaliseClaims covers the normalisation rules on claim sets that the
// emulator does not produce.
func TestNormaliseClaims(t *testing.T) {
	t.Parallel()
	empty := wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{}}
	tests := []struct {
		name     string
		provider string
		claims   jwt.MapClaims
		want     wantPrincipal
	}{
		{"no claims at all give empty fields", "oidc", jwt.MapClaims{}, empty},
		{"scope with extra spaces is split on whitespace", "oidc", jwt.MapClaims{"scope": "  a \t b  a "}, wantPrincipal{Scopes: []string{"a", "b"}, Permissions: []string{}, Roles: []string{}}},
		{"scope and scp are unioned in first-seen order", "oidc", jwt.MapClaims{"scope": "b a", "scp": []any{"c", "a"}}, wantPrincipal{Scopes: []string{"b", "a", "c"}, Permissions: []string{}, Roles: []string{}}},
		{"non-string and empty members of lists are dropped", "auth0", jwt.MapClaims{"permissions": []any{"x", 1.0, "", nil, true, "y", "x"}}, wantPrincipal{Scopes: []string{}, Permissions: []string{"x", "y"}, Roles: []string{}}},
		{"a permissions string is one permission", "workos", jwt.MapClaims{"permissions": "x:read"}, wantPrincipal{Scopes: []string{}, Permissions: []string{"x:read"}, Roles: []string{}}},
		{"scope that is not a string is ignored", "oidc", jwt.MapClaims{"scope": []any{"a"}}, empty},
		{"permissions of another type are ignored", "auth0", jwt.MapClaims{"permissions": map[string]any{"a": true}}, empty},
		{"azp is the client_id when client_id is absent", "auth0", jwt.MapClaims{"azp": "c1"}, wantPrincipal{ClientID: "c1", Scopes: []string{}, Permissions: []string{}, Roles: []string{}}},
		{"client_id wins over azp", "auth0", jwt.MapClaims{"azp": "c1", "client_id": "c2"}, wantPrincipal{ClientID: "c2", Scopes: []string{}, Permissions: []string{}, Roles: []string{}}},
		{"empty client_id falls back to azp", "auth0", jwt.MapClaims{"azp": "c1", "client_id": ""}, wantPrincipal{ClientID: "c1", Scopes: []string{}, Permissions: []string{}, Roles: []string{}}},
		{"org_id that is not a string is empty", "workos", jwt.MapClaims{"org_id": 7.0}, empty},
		{"role and roles are unioned", "workos", jwt.MapClaims{"role": "admin", "roles": []any{"member", "admin"}}, wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{"admin", "member"}}},
		{"stytch organization_id is the org_id", "stytch", jwt.MapClaims{stytchOrganization: map[string]any{"organization_id": "organization-1", "slug": "o"}}, wantPrincipal{OrgID: "organization-1", Scopes: []string{}, Permissions: []string{}, Roles: []string{}}},
		{"stytch organization claim of the wrong shape is ignored", "stytch", jwt.MapClaims{stytchOrganization: "organization-1"}, empty},
		{"stytch organization without organization_id gives no org", "stytch", jwt.MapClaims{stytchOrganization: map[string]any{"slug": "o"}}, empty},
		{"stytch session roles are the roles", "stytch", jwt.MapClaims{stytchSession: map[string]any{"roles": []any{"stytch_member", "okr_admin"}}}, wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{"stytch_member", "okr_admin"}}},
		{"stytch session of the wrong shape is ignored", "stytch", jwt.MapClaims{stytchSession: []any{"admin"}}, empty},
		{"stytch's namespaced claims mean nothing to another provider", "oidc", jwt.MapClaims{stytchOrganization: map[string]any{"organization_id": "organization-1"}, stytchSession: map[string]any{"roles": []any{"admin"}}}, empty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.claims["sub"], tc.claims["iss"] = "user-1", "https://issuer.example"
			p := normalise(tc.provider, "label", tc.claims)
			if p.Sub != "user-1" || p.Iss != "https://issuer.example" || p.Provider != tc.provider || p.Issuer != "label" {
				t.Errorf("sub=%q iss=%q provider=%q issuer=%q", p.Sub, p.Iss, p.Provider, p.Issuer)
			}
			checkPrincipal(t, p, tc.want)
			if !reflect.DeepEqual(p.Claims, map[string]any(tc.claims)) {
				t.Errorf("claims = %v, want every claim %v", p.Claims, tc.claims)
			}
		})
	}
}

// TestPrincipalHelpers: Anonymous, Key and the context helpers.
func TestPrincipalHelpers(t *testing.T) {
	t.Parallel()
	a := Anonymous()
	if a.Provider != ProviderAnonymous || a.Sub != "" {
		t.Errorf("Anonymous() = %+v", a)
	}
	checkPrincipal(t, a, wantPrincipal{Scopes: []string{}, Permissions: []string{}, Roles: []string{}})

	p1 := &Principal{Iss: "https://a.example/", Sub: "x"}
	p2 := &Principal{Iss: "https://a.example/x", Sub: ""}
	p3 := &Principal{Iss: "https://b.example/", Sub: "x"}
	if p1.Key() == p2.Key() || p1.Key() == p3.Key() {
		t.Errorf("keys collide: %q %q %q", p1.Key(), p2.Key(), p3.Key())
	}
	if p1.Key() != (&Principal{Iss: "https://a.example/", Sub: "x", ClientID: "other"}).Key() {
		t.Error("Key depends on more than iss and sub")
	}

	ctx := context.Background()
	if _, ok := PrincipalFrom(ctx); ok {
		t.Error("PrincipalFrom found a principal in an empty context")
	}
	if _, ok := PrincipalFrom(WithPrincipal(ctx, nil)); ok {
		t.Error("PrincipalFrom reports a nil principal as present")
	}
	if got, ok := PrincipalFrom(WithPrincipal(ctx, p1)); !ok || got != p1 {
		t.Errorf("PrincipalFrom = %v, %v", got, ok)
	}
}

// TestPrincipalFingerprint: equal for principals a policy cannot tell apart,
// different as soon as anything a policy sees differs.
func TestPrincipalFingerprint(t *testing.T) {
	t.Parallel()
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "u1", "iss": "https://a.example/", "scope": "a b", "permissions": []any{"p"}, "org_id": "o1", "custom": map[string]any{"x": 1.0}}
	}
	base := normalise("auth0", "label", claims())
	if base.Fingerprint() == "" {
		t.Fatal("empty fingerprint")
	}
	if same := normalise("auth0", "label", claims()); same.Fingerprint() != base.Fingerprint() {
		t.Error("equal principals have different fingerprints")
	}
	if relabelled := normalise("auth0", "another-label", claims()); relabelled.Fingerprint() != base.Fingerprint() {
		t.Error("the issuer label, which policies do not see, changes the fingerprint")
	}
	hand := *base
	hand.fingerprint = ""
	if hand.Fingerprint() != base.Fingerprint() {
		t.Error("a hand-built copy has another fingerprint")
	}
	tests := []struct {
		name     string
		provider string
		change   func(c jwt.MapClaims)
	}{
		{"another sub", "auth0", func(c jwt.MapClaims) { c["sub"] = "u2" }},
		{"another scope", "auth0", func(c jwt.MapClaims) { c["scope"] = "a" }},
		{"another permission", "auth0", func(c jwt.MapClaims) { c["permissions"] = []any{"q"} }},
		{"another org", "auth0", func(c jwt.MapClaims) { c["org_id"] = "o2" }},
		{"another custom claim value", "auth0", func(c jwt.MapClaims) { c["custom"] = map[string]any{"x": 2.0} }},
		{"an extra claim", "auth0", func(c jwt.MapClaims) { c["jti"] = "j1" }},
		{"another provider", "workos", func(jwt.MapClaims) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := claims()
			tc.change(c)
			if normalise(tc.provider, "label", c).Fingerprint() == base.Fingerprint() {
				t.Error("fingerprint unchanged")
			}
		})
	}
	a, b := Anonymous(), Anonymous()
	if a.Fingerprint() == base.Fingerprint() || a.Fingerprint() != b.Fingerprint() {
		t.Error("anonymous fingerprint")
	}
}

// TestPrincipalInput: the principal a policy sees is its JSON encoding (the
// fields docs/policy-contract.md names), with every list and the claims present even
// when a hand-built principal left them nil.
func TestPrincipalInput(t *testing.T) {
	t.Parallel()
	full := normalise("stytch", "label", jwt.MapClaims{"sub": "u1", "iss": "https://a.example/", "azp": "c1", "scope": "a b",
		"permissions": []any{"p"}, "roles": []any{"r"}, "org_id": "o1", "custom": map[string]any{"x": 1.0}})
	for _, tc := range []struct {
		name string
		p    *Principal
		want string // the JSON encoding of Input
	}{
		{"made by the verifier: its JSON encoding", full, ""},
		{"built by hand with nil lists and claims", &Principal{Sub: "u2"},
			`{"claims":{},"client_id":"","iss":"","org_id":"","permissions":[],"provider":"","roles":[],"scopes":[],"sub":"u2"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				asMap := map[string]any{} // map keys encode sorted
				b, _ := json.Marshal(tc.p)
				if err := json.Unmarshal(b, &asMap); err != nil {
					t.Fatal(err)
				}
				b, _ = json.Marshal(asMap)
				want = string(b)
			}
			got, err := json.Marshal(tc.p.Input())
			if err != nil || string(got) != want {
				t.Errorf("Input() encodes as\n%s (%v), want\n%s", got, err, want)
			}
		})
	}
}
