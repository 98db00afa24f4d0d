package idptest

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Stytch's namespaced claims.
const (
	StytchOrganizationClaim = "https://stytch.com/organization"
	StytchSessionClaim      = "https://stytch.com/session"
)

// Claims describes an access token in provider-neutral terms; Token and
// Layout lay them out the way the tenant's provider does:
//
//	field        auth0                 workos                 stytch
//	Sub          sub                   sub                    sub
//	Audience     aud (see below)       aud (string if one)    aud (always an array)
//	Scopes       scope "a b"           scope "a b"            scope "a b"
//	Permissions  permissions           permissions            (ignored)
//	Roles        (ignored)             role (first), roles    https://stytch.com/session {roles}
//	OrgID        org_id                org_id                 https://stytch.com/organization {organization_id, slug}
//	ClientID     azp                   client_id              client_id
//	(generated)  -                     sid, jti               -
//	NotBefore    nbf if set            nbf if set             nbf, default iat
//
// Every token has iss (Issuer()), sub, iat and exp. Empty fields are left
// out, except: Sub defaults to the tenant's subject (stable for the tenant's
// lifetime, shaped like the provider's: auth0|<24 hex>, user_<ULID>,
// user-test-<uuid>, or member-test-<uuid> for a stytch token with an OrgID);
// and a non-nil empty Permissions gives "permissions": [] (what Auth0 RBAC
// issues for a user without permissions), while nil leaves it out.
//
// Auth0's aud: with no Audience it is left out; when Scopes holds "openid" it
// is an array of Audience plus Issuer()+"userinfo"; otherwise a string for
// one audience and an array for several. Use Extra to force other shapes.
//
// Auth0 puts roles in tokens only through a namespaced custom claim of an
// Action, and Stytch has no permissions claim: pass those through Extra.
type Claims struct {
	Sub         string
	Audience    []string // nil or empty: no aud claim
	Scopes      []string
	Permissions []string
	Roles       []string
	OrgID       string
	ClientID    string
	// TTL is exp - iat; zero means one hour, negative an expired token.
	TTL time.Duration
	// NotBefore sets nbf; zero means the provider's default (stytch: nbf =
	// iat; the others: no nbf).
	NotBefore time.Time
	// IssuedAt sets iat (and so exp); zero means now.
	IssuedAt time.Time
	// Extra adds or overrides top-level claims after the layout; a nil
	// value removes the claim (for example "exp": nil for a token that
	// never expires).
	Extra map[string]any
}

// Layout returns the claims Token would sign for c: handy to tweak a valid
// claim set and sign it with Sign.
func (tn *Tenant) Layout(c Claims) map[string]any {
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	m := map[string]any{
		"iss": tn.Issuer(),
		"iat": iat.Unix(),
		"exp": iat.Add(ttl).Unix(),
	}
	sub := c.Sub
	if sub == "" {
		sub = tn.defaultSub
		if tn.provider == ProviderStytch && c.OrgID != "" {
			sub = tn.defaultMemberSub
		}
	}
	m["sub"] = sub
	setIf := func(name, v string) {
		if v != "" {
			m[name] = v
		}
	}
	setIf("scope", strings.Join(c.Scopes, " "))

	switch tn.provider {
	case ProviderAuth0:
		if len(c.Audience) > 0 {
			switch {
			case slices.Contains(c.Scopes, "openid"):
				aud := slices.Clone(c.Audience)
				if ui := tn.Issuer() + "userinfo"; !slices.Contains(aud, ui) {
					aud = append(aud, ui)
				}
				m["aud"] = aud
			case len(c.Audience) == 1:
				m["aud"] = c.Audience[0]
			default:
				m["aud"] = slices.Clone(c.Audience)
			}
		}
		setIf("azp", c.ClientID)
		setIf("org_id", c.OrgID)
		if c.Permissions != nil {
			m["permissions"] = slices.Clone(c.Permissions)
		}

	case ProviderWorkOS:
		switch len(c.Audience) {
		case 0:
		case 1:
			m["aud"] = c.Audience[0]
		default:
			m["aud"] = slices.Clone(c.Audience)
		}
		setIf("client_id", c.ClientID)
		setIf("org_id", c.OrgID)
		m["sid"] = "session_" + newULID()
		m["jti"] = newULID()
		if len(c.Roles) > 0 {
			m["role"] = c.Roles[0]
			m["roles"] = slices.Clone(c.Roles)
		}
		if c.Permissions != nil {
			m["permissions"] = slices.Clone(c.Permissions)
		}

	case ProviderStytch:
		if len(c.Audience) > 0 {
			m["aud"] = slices.Clone(c.Audience)
		}
		setIf("client_id", c.ClientID)
		m["nbf"] = iat.Unix()
		if c.OrgID != "" {
			m[StytchOrganizationClaim] = map[string]any{
				"organization_id": c.OrgID,
				"slug":            strings.ToLower(c.OrgID),
			}
		}
		if len(c.Roles) > 0 {
			m[StytchSessionClaim] = map[string]any{"roles": slices.Clone(c.Roles)}
		}
	}

	if !c.NotBefore.IsZero() {
		m["nbf"] = c.NotBefore.Unix()
	}
	for k, v := range c.Extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// Token returns an access token for c, laid out as the provider does (see
// Claims) and signed with the current key: header alg (the key's), kid and
// typ "JWT".
func (tn *Tenant) Token(c Claims) string {
	tn.t.Helper()
	return tn.Sign(nil, tn.Layout(c))
}

// Sign is the low-level signer for bad-token tests. It signs claims with the
// current key under header; header starts as {"alg": <current key's alg>,
// "kid": CurrentKID(), "typ": "JWT"}, then each entry of header overrides it
// (a nil value removes it; the signature then uses the current key's alg).
// header["alg"] picks the algorithm:
//
//   - RS256, RS384, RS512, PS256, PS384, PS512 with an RSA current key, ES256
//     with an ES256 one: a genuine signature by the current key;
//   - HS256, HS384, HS512: HMAC keyed with PublicKeyPEM(), the alg-confusion
//     attack token;
//   - "none" in any letter case: an unsigned token ("header.payload.").
//
// Any other alg, or one that does not fit the key, fails the test. Claims
// are encoded as given (nil encodes as {}).
func (tn *Tenant) Sign(header map[string]any, claims map[string]any) string {
	tn.t.Helper()
	k := tn.current()
	h := map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"}
	alg := k.alg
	for name, v := range header {
		if v == nil {
			delete(h, name)
			continue
		}
		h[name] = v
		if name == "alg" {
			s, ok := v.(string)
			if !ok {
				tn.t.Fatalf("idptest: Sign: header alg %v is not a string", v)
			}
			alg = s
		}
	}
	if claims == nil {
		claims = map[string]any{}
	}
	hj, err := json.Marshal(h)
	if err != nil {
		tn.t.Fatalf("idptest: Sign: header: %v", err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		tn.t.Fatalf("idptest: Sign: claims: %v", err)
	}
	input := b64(hj) + "." + b64(cj)

	var key any
	switch {
	case strings.EqualFold(alg, "none"):
		return input + "."
	case alg == "HS256" || alg == "HS384" || alg == "HS512":
		key = tn.PublicKeyPEM()
	case strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS"):
		rk, ok := k.priv.(*rsa.PrivateKey)
		if !ok {
			tn.t.Fatalf("idptest: Sign: alg %s needs an RSA key, the current key is %s", alg, k.alg)
		}
		key = rk
	case alg == "ES256":
		ek, ok := k.priv.(*ecdsa.PrivateKey)
		if !ok {
			tn.t.Fatalf("idptest: Sign: alg %s needs an ES256 key, the current key is %s", alg, k.alg)
		}
		key = ek
	}
	method := jwt.GetSigningMethod(alg)
	if key == nil || method == nil {
		tn.t.Fatalf("idptest: Sign: unsupported alg %q", alg)
	}
	sig, err := method.Sign(input, key)
	if err != nil {
		tn.t.Fatalf("idptest: Sign: %s: %v", alg, err)
	}
	return input + "." + b64(sig)
}
