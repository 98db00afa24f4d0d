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
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// MaxTokenBytes is the largest token looked at; real access tokens are a
// few KiB (docs/http.md, "Token refusals").
const MaxTokenBytes = 16 << 10

// Algorithms are the only signing algorithms accepted: asymmetric ones.
// `none` and every HMAC algorithm are refused whatever the header says, so a
// token "signed" with an issuer's public key as an HMAC secret never passes
// (RFC 8725 §3.1, §3.2).
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

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

type issuerState struct {
	cfg  Issuer
	keys atomic.Pointer[keyfunc.Keyfunc] // nil until the keys were fetched once
	// generation grows whenever a key leaves the issuer's key store (see
	// keyStore); a cached verification of an older generation is void.
	generation atomic.Uint64
	mu         sync.Mutex
	kids       map[string]bool // the kids in the key store
	lastGood   time.Time       // of the last good fetch
	lastErr    error           // of the last fetch; nil when it was good
}

// IssuerStatus is what an operator needs to know of one issuer's keys.
type IssuerStatus struct {
	Name       string    `json:"name"`
	KeysLoaded bool      `json:"keys_loaded"`
	Keys       int       `json:"keys"`
	LastGood   time.Time `json:"last_good_fetch,omitzero"`
	LastError  string    `json:"last_fetch_error,omitempty"`
}

// Status reports every issuer's keys, sorted by name.
func (v *Verifier) Status() []IssuerStatus {
	out := make([]IssuerStatus, 0, len(v.byIss))
	for _, st := range v.byIss {
		st.mu.Lock()
		s := IssuerStatus{Name: st.cfg.Name, KeysLoaded: st.keys.Load() != nil, Keys: len(st.kids), LastGood: st.lastGood}
		if st.lastErr != nil {
			s.LastError = st.lastErr.Error()
		}
		st.mu.Unlock()
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b IssuerStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (st *issuerState) fetched(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lastErr = err
	if err == nil {
		st.lastGood = time.Now()
	}
}

// verified is a cached verification: the principal, until when the token
// stays valid (exp plus leeway, the same rule as a fresh check), and the
// issuer's key generation it was verified under.
type verified struct {
	p          *Principal
	until      time.Time
	issuer     *issuerState
	generation uint64
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

// keyStore holds a fetched issuer's keys: jwkset's memory store, which each
// good refresh fills through KeyReplaceAll (jwkset's refresh changes it no
// other way). When a key leaves it, every cached verification of the issuer
// becomes void, so a key removed from the JWKS stops working at once.
//
// The generation grows after the new set is stored, never before, and Verify
// reads the generation before it reads a key: a verification that read the
// old generation is void once it grows, and one that read the new generation
// reads its key from the new set, where a removed kid is not found. (Growing
// it when the response arrived, before jwkset stored the set, left a window
// in which a removed key verified a token that was cached under the new
// generation and honoured until it expired.) This is preferred to checking
// a cached token's kid against the current set on every hit: a hit stays
// one atomic load, and a token without a kid, verified by any key of its
// algorithm, is covered too.
type keyStore struct {
	*jwkset.MemoryJWKSet
	st *issuerState
}

func (s keyStore) KeyReplaceAll(ctx context.Context, keys []jwkset.JWK) error {
	s.st.mu.Lock() // one replacement at a time: refreshes may overlap
	defer s.st.mu.Unlock()
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	now := make(map[string]bool, len(keys))
	for _, k := range keys {
		now[k.Marshal().KID] = true
	}
	for k := range s.st.kids {
		if !now[k] {
			s.st.generation.Add(1)
			break
		}
	}
	s.st.kids = now
	return nil
}

// Start fetches every issuer's keys in the background, retrying with backoff
// until the first fetch succeeds; after that keyfunc refreshes them. Close
// stops it all.
func (v *Verifier) Start(ctx context.Context) {
	ctx, v.cancel = context.WithCancel(ctx)
	for _, st := range v.byIss {
		if st.keys.Load() != nil {
			continue
		}
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.load(ctx, st)
		}()
	}
}

// Close stops the background fetches.
func (v *Verifier) Close() {
	if v.cancel != nil {
		v.cancel()
	}
	v.wg.Wait()
}

// Pending names the issuers whose keys were never fetched.
func (v *Verifier) Pending() []string {
	var out []string
	for _, st := range v.byIss {
		if st.keys.Load() == nil {
			out = append(out, st.cfg.Name)
		}
	}
	slices.Sort(out)
	return out
}

func (v *Verifier) load(ctx context.Context, st *issuerState) {
	backoff := 250 * time.Millisecond
	for {
		kf, stop, err := v.connect(ctx, st)
		if err == nil {
			// The keyfunc's refresh goroutine lives until Close.
			context.AfterFunc(ctx, stop)
			st.keys.Store(&kf)
			v.opts.Logger.Info("issuer keys loaded", "issuer", st.cfg.Name)
			return
		}
		v.opts.Logger.Warn("issuer keys not loaded; retrying", "issuer", st.cfg.Name, "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// connect resolves the JWKS URL and makes the issuer's keyfunc, which
// succeeds only when the first fetch does.
func (v *Verifier) connect(ctx context.Context, st *issuerState) (keyfunc.Keyfunc, context.CancelFunc, error) {
	name := st.cfg.Name
	plain := &http.Client{Transport: v.opts.Transport, Timeout: v.opts.FetchTimeout, CheckRedirect: refuseInsecureRedirect}
	fetchCtx, cancelFetch := context.WithTimeout(ctx, v.opts.FetchTimeout)
	u, err := jwksURL(fetchCtx, plain, st.cfg)
	cancelFetch()
	if err == nil {
		err = CheckFetchURL(u)
	}
	if err != nil {
		return nil, nil, err
	}
	guarded := &http.Client{
		Timeout: v.opts.FetchTimeout,
		Transport: &jwksGuard{base: v.opts.Transport, report: func(err error, kids []string) {
			st.fetched(err)
			v.opts.OnJWKSRefresh(name, err, len(kids))
		}},
		// A JWKS is fetched from the URL named, never from a redirect.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// Each attempt has its own context: jwkset starts its refresh goroutine
	// before the first fetch, and a failed attempt must not leave it running.
	attempt, cancel := context.WithCancel(ctx)
	kf, err := v.newKeyfunc(attempt, st, u, guarded)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return kf, cancel, nil
}

// newKeyfunc is keyfunc.NewDefaultOverrideCtx with toolgate's options, built
// by hand to give jwkset the issuer's keyStore. It returns once the first
// fetch was applied, or with its error.
func (v *Verifier) newKeyfunc(ctx context.Context, st *issuerState, u string, client *http.Client) (keyfunc.Keyfunc, error) {
	fetched, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:          client,
		Ctx:             ctx,
		HTTPTimeout:     v.opts.FetchTimeout,
		RefreshInterval: v.opts.RefreshInterval,
		RefreshErrorHandler: func(_ context.Context, err error) {
			v.opts.Logger.Warn("JWKS refresh failed; cached keys kept", "issuer", st.cfg.Name, "error", err)
		},
		Storage: keyStore{MemoryJWKSet: jwkset.NewMemoryStorage(), st: st},
	})
	if err != nil {
		return nil, err
	}
	store, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{u: fetched},
		// One refresh per interval for unknown kids, and a request never
		// waits for the limiter longer than one fetch would take: the wait
		// bound is also the bound of the refresh it triggers.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(v.opts.UnknownKIDInterval), 1),
		RateLimitWaitMax:  v.opts.FetchTimeout,
	})
	if err != nil {
		return nil, err
	}
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store})
}

// Verify validates a raw access token (RFC 6750 §2.1 bearer, RFC 9068
// profile) and returns its principal. A refused token is an *Error whose
// Reason says why. A verification is remembered (unless the cache is off)
// for as long as the token stays valid: in the cache, and in the Memo that
// ctx carries, if any.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	cacheable := v.cache != nil && len(raw) <= MaxTokenBytes
	memo, _ := ctx.Value(memoKey{}).(*Memo)
	if !cacheable {
		memo = nil
	}
	if memo != nil {
		if m := memo.last.Load(); m != nil && m.is(raw) {
			if v.fresh(m.verified) {
				v.opts.OnValidation(m.p.Issuer, "")
				return m.p, nil
			}
			memo.last.CompareAndSwap(m, nil)
		}
	}
	var key [sha256.Size]byte
	if cacheable {
		key = tokenKey(raw)
		if c, ok := v.cache.Get(key); ok {
			if v.fresh(c) {
				memo.remember(raw, c)
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
		c := verified{p: p, until: until, issuer: st, generation: gen}
		v.cache.Add(key, c)
		memo.remember(raw, c)
	}
	v.opts.OnValidation(p.Issuer, "")
	return p, nil
}

// fresh reports whether a remembered verification still holds: the token
// has not expired (to the second, leeway included: the rule of a fresh
// check) and no key left its issuer's JWKS since.
func (v *Verifier) fresh(c verified) bool {
	return v.opts.Now().Before(c.until) && c.generation == c.issuer.generation.Load()
}

// A Memo remembers the last token verified on one client connection. A
// keep-alive client sends the same token with every request; the memo
// recognises it by comparing it with the one it holds, in constant time,
// which costs less than hashing it to look it up in the cache. The memo
// holds that one token for the connection's life and honours the same
// expiry and key rules as the cache. Safe for concurrent use.
type Memo struct{ last atomic.Pointer[memoized] }

type memoized struct {
	raw string
	verified
}

type memoKey struct{}

// WithMemo returns a context that carries a new Memo, for the requests of
// one connection (http.Server.ConnContext).
func WithMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, &Memo{})
}

func (m *Memo) remember(raw string, c verified) {
	if m != nil {
		m.last.Store(&memoized{raw: raw, verified: c})
	}
}

// is compares raw with the remembered token in constant time (only the
// lengths may differ in time).
func (m *memoized) is(raw string) bool {
	return len(raw) == len(m.raw) && equalConstantTime(raw, m.raw)
}

// equalConstantTime reports whether a and b, of the same length, are equal,
// in a time that depends on their length only: crypto/subtle's
// ConstantTimeCompare, eight bytes a step and without copying strings to
// byte slices.
func equalConstantTime(a, b string) bool {
	var diff uint64
	i := 0
	for ; i+8 <= len(a); i += 8 {
		diff |= le64(a[i:i+8]) ^ le64(b[i:i+8])
	}
	for ; i < len(a); i++ {
		diff |= uint64(a[i] ^ b[i])
	}
	return diff == 0
}

// le64 reads eight bytes of s (one load, once compiled).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// tokenKey names a token in the cache: its SHA-256, so that the cache holds
// no token. Usual tokens are hashed from a copy on the stack, without
// allocating.
func tokenKey(raw string) [sha256.Size]byte {
	var buf [2048]byte
	return sha256.Sum256(tokenBytes(&buf, raw))
}

// tokenBytes is raw as bytes: copied into the caller's buf (on its stack)
// when it fits, so that reading a usual token allocates nothing.
func tokenBytes(buf *[2048]byte, raw string) []byte {
	if len(raw) <= len(buf) {
		return append(buf[:0], raw...)
	}
	return []byte(raw)
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

// classify maps golang-jwt's errors to reason codes.
func classify(tok *jwt.Token, err error, issuer string) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if tok != nil && tok.Header != nil {
		if alg, _ := tok.Header["alg"].(string); !slices.Contains(Algorithms, alg) {
			return refuse(ReasonAlgNotAllowed, issuer, err)
		}
	}
	r := ReasonClaimsInvalid
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		r = ReasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		r = ReasonSignatureInvalid
	case errors.Is(err, jwt.ErrTokenExpired):
		r = ReasonExpired
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		r = ReasonExpMissing
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		r = ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		r = ReasonIssuedInFuture
	}
	return refuse(r, issuer, err)
}
