package idp

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/toolgate/toolgate/config"
	"golang.org/x/time/rate"
)

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
		err = config.CheckURL(u)
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
