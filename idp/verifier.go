package idp

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/toolgate/toolgate/config"
)

// MaxTokenBytes is the largest token looked at; real access tokens are a
// few KiB (docs/http.md, "Token refusals").
const MaxTokenBytes = 16 << 10

// Algorithms are the only signing algorithms accepted: asymmetric ones.
// `none` and every HMAC algorithm are refused whatever the header says, so a
// token "signed" with an issuer's public key as an HMAC secret never passes
// (RFC 8725 §3.1, §3.2).
var Algorithms = config.SigningAlgorithms

// Issuer is one trusted authorization server.
type Issuer struct {
	Name      string   // label for logs and metrics
	Provider  string   // auth0 | workos | stytch | oidc: the claim-normalisation preset
	Issuer    string   // exact `iss` value
	Audiences []string // the token's `aud` must contain one of these (RFC 8707)
	JWKSURL   string   // optional: default from the preset or discovery
	// StaticJWKS, when set, is the issuer's whole key set and nothing is
	// fetched (the development issuer).
	StaticJWKS json.RawMessage
}

// Options tune the verifier. The zero value of each field takes the default
// of the configuration (docs/configuration.md, "The configuration file").
type Options struct {
	Leeway             time.Duration // on exp, nbf and iat; default 30s, negative for none
	UnknownKIDInterval time.Duration // at most one refresh per issuer per interval on an unknown kid; default 10s
	RefreshInterval    time.Duration // background refresh; default 5m
	FetchTimeout       time.Duration // one JWKS or discovery fetch; default 5s
	Transport          http.RoundTripper
	Logger             *slog.Logger
	// OnValidation is told the outcome of every verification: the configured
	// issuer's name ("" when none matched) and the reason ("" when valid).
	OnValidation func(issuer string, reason Reason)
	// OnJWKSRefresh is told the outcome of every JWKS fetch and how many
	// usable keys it held.
	OnJWKSRefresh func(issuer string, err error, keys int)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// CacheSize bounds the cache of verified tokens; 0 takes the default
	// (10000), a negative value turns the cache off.
	CacheSize int
}

func (o *Options) defaults() {
	switch {
	case o.Leeway == 0:
		o.Leeway = 30 * time.Second
	case o.Leeway < 0: // explicitly none
		o.Leeway = 0
	}
	if o.UnknownKIDInterval == 0 {
		o.UnknownKIDInterval = 10 * time.Second
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = 5 * time.Minute
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = 5 * time.Second
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OnValidation == nil {
		o.OnValidation = func(string, Reason) {}
	}
	if o.OnJWKSRefresh == nil {
		o.OnJWKSRefresh = func(string, error, int) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
}

// Verifier validates access tokens against a fixed set of issuers, each with
// its own key cache.
type Verifier struct {
	opts   Options
	byIss  map[string]*issuerState
	parser *jwt.Parser
	cache  *lru.Cache[[sha256.Size]byte, verified] // nil when off
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewVerifier builds a verifier for the issuers. Keys are fetched by Start.
func NewVerifier(issuers []Issuer, opts Options) (*Verifier, error) {
	opts.defaults()
	v := &Verifier{
		opts:  opts,
		byIss: make(map[string]*issuerState, len(issuers)),
		parser: jwt.NewParser(
			jwt.WithValidMethods(Algorithms),
			jwt.WithLeeway(opts.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(opts.Now),
		),
	}
	for _, is := range issuers {
		if _, dup := v.byIss[is.Issuer]; dup {
			return nil, fmt.Errorf("issuer %q configured twice", is.Issuer)
		}
		if len(is.Audiences) == 0 {
			return nil, fmt.Errorf("issuer %q has no audience", is.Issuer)
		}
		st := &issuerState{cfg: is}
		if is.StaticJWKS != nil {
			kf, err := keyfunc.NewJWKSetJSON(is.StaticJWKS)
			if err != nil {
				return nil, fmt.Errorf("issuer %q: %w", is.Issuer, err)
			}
			st.keys.Store(&kf)
		}
		v.byIss[is.Issuer] = st
	}
	if opts.CacheSize > 0 {
		v.cache, _ = lru.New[[sha256.Size]byte, verified](opts.CacheSize)
	}
	return v, nil
}

// Verify validates a raw access token (RFC 6750 §2.1 bearer, RFC 9068
// profile) and returns its principal. A refused token is an *Error whose
// Reason says why. A verification is remembered in the cache (unless it is
// off) for as long as the token stays valid.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	cacheable := v.cache != nil && len(raw) <= MaxTokenBytes
	var key [sha256.Size]byte
	if cacheable {
		key = tokenKey(raw)
		if c, ok := v.cache.Get(key); ok {
			if v.fresh(c) {
				v.opts.OnValidation(c.p.Issuer, "")
				return c.p, nil
			}
			v.cache.Remove(key)
		}
	}
	p, st, until, gen, err := v.verify(ctx, raw)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = refuse(ReasonClaimsInvalid, "", err)
		}
		v.opts.OnValidation(e.Issuer, e.Reason)
		return nil, e
	}
	if cacheable {
		v.cache.Add(key, verified{p: p, until: until, issuer: st, generation: gen})
	}
	v.opts.OnValidation(p.Issuer, "")
	return p, nil
}

// verify checks a token afresh. It returns the principal, its issuer, the
// moment the token stops being valid, and the issuer's key generation read
// before the keys were used.
func (v *Verifier) verify(ctx context.Context, raw string) (*Principal, *issuerState, time.Time, uint64, error) {
	fail := func(err error) (*Principal, *issuerState, time.Time, uint64, error) {
		return nil, nil, time.Time{}, 0, err
	}
	if len(raw) > MaxTokenBytes {
		return fail(refuse(ReasonTooLarge, "", nil))
	}
	if strings.Count(raw, ".") != 2 {
		return fail(refuse(ReasonMalformed, "", errors.New("a JWT has three segments")))
	}
	var (
		st  *issuerState
		gen uint64
	)
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		if st = v.byIss[iss]; st == nil {
			return nil, refuse(ReasonIssuerUnknown, "", nil)
		}
		gen = st.generation.Load() // before the key is read: see keyStore
		kf := st.keys.Load()
		if kf == nil {
			return nil, refuse(ReasonKeysUnavailable, st.cfg.Name, nil)
		}
		key, err := (*kf).KeyfuncCtx(ctx)(t)
		if err != nil {
			return nil, refuse(ReasonKeyUnknown, st.cfg.Name, err)
		}
		return key, nil
	})
	name := ""
	if st != nil {
		name = st.cfg.Name
	}
	if err != nil {
		return fail(classify(tok, err, name))
	}
	aud, _ := claims.GetAudience()
	switch {
	case len(aud) == 0:
		return fail(refuse(ReasonAudienceMissing, name, nil))
	case !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(st.cfg.Audiences, a) }):
		return fail(refuse(ReasonAudienceMismatch, name, nil))
	}
	if sub, _ := claims["sub"].(string); sub == "" {
		return fail(refuse(ReasonSubjectMissing, name, nil))
	}
	exp, _ := claims.GetExpirationTime() // required and checked by the parser
	return normalise(st.cfg.Provider, name, claims), st, exp.Add(v.opts.Leeway), gen, nil
}
