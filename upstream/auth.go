package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
)

// AssertionLifetime is how long an assertion is valid: issue 15 caps it at
// 5 minutes; one is signed for every request, so it need not live long.
const AssertionLifetime = 2 * time.Minute

// clientCredentials is a transport that sends the access token toolgate
// gets for itself at the upstream's token_url (OAuth 2.0 client
// credentials grant, RFC 6749 §4.4) as `Authorization: Bearer` (RFC 6750
// §2.1). The token is reused until shortly before it expires
// (oauth2.ReuseTokenSource), then a new one is asked for.
func clientCredentials(a config.UpstreamAuth, secret string, timeout time.Duration, base http.RoundTripper) http.RoundTripper {
	cc := &clientcredentials.Config{ClientID: a.ClientID, ClientSecret: secret, TokenURL: a.TokenURL, Scopes: a.Scopes}
	if a.Audience != "" {
		// Not in RFC 6749, but what Auth0 and others ask for to pick the
		// API a token is for (RFC 8707's resource is the standard one).
		cc.EndpointParams = url.Values{"audience": {a.Audience}}
	}
	// The token endpoint's client: bounded, and never following a redirect
	// with the client secret.
	hc := &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	return &oauth2.Transport{Source: cc.TokenSource(ctx), Base: base}
}

// Signer signs the assertions of the upstreams with auth.type assertion:
// short-lived JWTs (RFC 7519) that tell an upstream who the end user of a
// request is, verifiable with toolgate's public key at
// /.well-known/jwks.json (RFC 7517). The ES256 key is made at start and
// kept in memory only: it changes on every restart, so an upstream must
// fetch the JWKS by kid rather than pin the key.
type Signer struct {
	key    *ecdsa.PrivateKey
	kid    string
	issuer string // public_url
	jwks   []byte
}

// NewSigner makes a signer with a new key, whose assertions name issuer
// (toolgate's public_url) as iss.
func NewSigner(issuer string) (*Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y (SEC 1 §2.3.3)
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := pub[1:33], pub[33:]
	// The kid is the key's RFC 7638 thumbprint: stable for the key, new
	// with every restart's key.
	thumb := sha256.Sum256(fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64(x), b64(y)))
	s := &Signer{key: key, kid: b64(thumb[:]), issuer: issuer}
	s.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": s.kid, "alg": "ES256", "use": "sig",
	}}})
	return s, err
}

// JWKS is the public key as a JWK Set (RFC 7517 §5).
func (s *Signer) JWKS() []byte { return s.jwks }

// Sign is an assertion for audience about p, the end user; nil is toolgate
// itself (a request no user made: the listing session's), whose sub is the
// issuer, as a client acting for itself is named in RFC 7523 §3.
func (s *Signer) Sign(p *idp.Principal, audience string) (string, error) {
	now := time.Now()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	c := jwt.MapClaims{
		"iss": s.issuer, "sub": s.issuer, "aud": audience,
		"iat": now.Unix(), "exp": now.Add(AssertionLifetime).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti),
	}
	if p != nil {
		c["sub"], c["client_id"], c["org_id"], c["scope"] = p.Sub, p.ClientID, p.OrgID, strings.Join(p.Scopes, " ")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = s.kid
	return t.SignedString(s.key)
}

// assertionHeader is the header of every request of a session with an
// assertion upstream: a new assertion about the principal of the request's
// context (mcp-go gives the request's context to the header function), or,
// for a request without one (initialize, the event stream), about owner,
// the principal whose session it is (nil: the listing or shared session).
func (u *Upstream) assertionHeader(owner *idp.Principal) func(context.Context) map[string]string {
	return func(ctx context.Context) map[string]string {
		p := owner
		if q, ok := idp.PrincipalFrom(ctx); ok {
			p = q
		}
		tok, err := u.pool.signer.Sign(p, u.cfg.Auth.Audience)
		if err != nil {
			u.log.Error("upstream assertion not signed", "error", err)
			return nil
		}
		return map[string]string{"Authorization": "Bearer " + tok}
	}
}
