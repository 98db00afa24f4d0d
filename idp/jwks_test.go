package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp/idptest"
)

// unknownKIDToken is a token of tn under a random kid that no JWKS holds.
func unknownKIDToken(tn *idptest.Tenant, i int) string {
	return tn.Sign(map[string]any{"kid": fmt.Sprintf("flood-%d-%d", i, time.Now().UnixNano())}, tn.Layout(idptest.Claims{Audience: []string{testAud}}))
}

// TestRotatedKeyIsAcceptedAfterOneRefresh: a token under a kid that appeared
// in the JWKS after the keys were loaded triggers one refresh and passes.
func TestRotatedKeyIsAcceptedAfterOneRefresh(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderWorkOS)
	rec := &recorder{}
	v := startVerifier(t, []Issuer{tenantIssuer("workos", tn)}, Options{OnJWKSRefresh: rec.onRefresh})
	waitReady(t, v, 5*time.Second)
	aud := []string{testAud}
	oldKID := tn.CurrentKID()
	oldTok := tn.Token(idptest.Claims{Audience: aud})
	mustVerify(t, v, oldTok)
	loads := tn.JWKSRequests()
	if loads != 1 {
		t.Errorf("initial load made %d JWKS requests, want 1", loads)
	}

	tn.Rotate()
	newTok := tn.Token(idptest.Claims{Audience: aud})
	if h, _ := segments(t, newTok); h["kid"] == oldKID || h["kid"] != tn.CurrentKID() {
		t.Fatalf("rotated token kid %v (old %s)", h["kid"], oldKID)
	}
	mustVerify(t, v, newTok)
	if got := tn.JWKSRequests(); got != loads+1 {
		t.Errorf("JWKS requests after the new kid = %d, want %d (one refresh)", got, loads+1)
	}
	mustVerify(t, v, newTok)
	mustVerify(t, v, oldTok) // the old key is still published
	if got := tn.JWKSRequests(); got != loads+1 {
		t.Errorf("JWKS requests after verifying cached kids = %d, want %d", got, loads+1)
	}
	ev := rec.refreshesSince(0)
	if len(ev) != 2 || ev[0].err != nil || ev[0].keys != 1 || ev[1].err != nil || ev[1].keys != 2 || ev[1].issuer != "workos" {
		t.Errorf("OnJWKSRefresh calls = %+v, want a load of 1 key then a refresh of 2", ev)
	}
}

// TestUnknownKIDFloodIsRateLimited: 50 tokens under random unknown kids cost
// at most one refresh per interval; after the interval a rotated key is
// picked up.
func TestUnknownKIDFloodIsRateLimited(t *testing.T) {
	t.Parallel()
	const (
		interval     = time.Second
		fetchTimeout = 300 * time.Millisecond
	)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	v := startVerifier(t, []Issuer{tenantIssuer("auth0", tn)}, Options{
		UnknownKIDInterval: interval,
		// Shorter than the interval: a request never queues behind the
		// limiter for a whole interval (it waits at most this long).
		FetchTimeout: fetchTimeout,
	})
	waitReady(t, v, 5*time.Second)
	loads := tn.JWKSRequests()

	floods := make([]string, 50)
	for i := range floods {
		floods[i] = unknownKIDToken(tn, i)
	}
	start := time.Now()
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for _, tok := range floods {
		wg.Go(func() {
			if _, err := verify(v, tok); ReasonOf(err) != ReasonKeyUnknown {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	floodTime := time.Since(start)
	if n := wrong.Load(); n != 0 {
		t.Errorf("%d flood tokens were not refused as key_unknown", n)
	}
	afterFlood := tn.JWKSRequests()
	if floodTime < interval {
		if afterFlood > 2 || afterFlood-loads > 1 {
			t.Errorf("flood of 50 unknown kids within %s: %d JWKS requests in all (%d for the flood), want at most 2 (1)", floodTime, afterFlood, afterFlood-loads)
		}
	} else {
		t.Logf("flood took %s, longer than the interval; request count not checked", floodTime)
	}

	// A genuinely rotated key within the interval is still rate limited...
	tn.AddKey("ES256")
	rotated := tn.Token(idptest.Claims{Audience: []string{testAud}})
	if time.Since(start) < interval-fetchTimeout-100*time.Millisecond {
		_, err := verify(v, rotated)
		refusal(t, err, ReasonKeyUnknown)
		if got := tn.JWKSRequests(); got != afterFlood {
			t.Errorf("JWKS requests = %d inside the interval, want %d", got, afterFlood)
		}
	}
	// ...and picked up once the interval has passed.
	deadline := time.Now().Add(interval + 3*time.Second)
	for {
		_, err := verify(v, rotated)
		if err == nil {
			break
		}
		if ReasonOf(err) != ReasonKeyUnknown {
			t.Fatalf("rotated token: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key not accepted %s after the flood", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(start); took < interval-100*time.Millisecond {
		t.Errorf("rotated key accepted %s after the flood's refresh, before the %s interval", took, interval)
	}
	if got := tn.JWKSRequests(); got != afterFlood+1 {
		t.Errorf("JWKS requests = %d after the rotated key was accepted, want %d", got, afterFlood+1)
	}
}

// TestRetiredKeyIsRefusedAfterRefresh: once the JWKS no longer has a key and
// the cache was refreshed, that key's tokens are refused as key_unknown, even
// those the verifier had cached as verified.
func TestRetiredKeyIsRefusedAfterRefresh(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		// poke makes a refresh happen (or lets one happen) before the old
		// token is tried again.
		poke func(v *Verifier, tn *idptest.Tenant, i int)
	}{
		{
			name: "refresh triggered by an unknown kid after the interval",
			opts: Options{UnknownKIDInterval: 100 * time.Millisecond, FetchTimeout: time.Second},
			poke: func(v *Verifier, tn *idptest.Tenant, i int) { _, _ = verify(v, unknownKIDToken(tn, i)) },
		},
		{
			name: "background refresh every RefreshInterval",
			opts: Options{RefreshInterval: 100 * time.Millisecond, UnknownKIDInterval: time.Minute},
			poke: func(*Verifier, *idptest.Tenant, int) { time.Sleep(20 * time.Millisecond) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := idptest.NewTenant(t, idptest.ProviderStytch)
			v := startVerifier(t, []Issuer{tenantIssuer("stytch", tn)}, tc.opts)
			waitReady(t, v, 5*time.Second)
			aud := []string{testAud}
			oldTok := tn.Token(idptest.Claims{Audience: aud})
			cached := mustVerify(t, v, oldTok)
			tn.AddKey("ES256")
			newTok := tn.Token(idptest.Claims{Audience: aud})
			mustVerify(t, v, newTok)
			if p := mustVerify(t, v, oldTok); p != cached {
				t.Error("a refresh that only added a key voided the token cache")
			}

			tn.RetireOldKeys()
			if kids := tn.PublishedKIDs(); len(kids) != 1 {
				t.Fatalf("published kids after retiring: %q", kids)
			}
			deadline := time.Now().Add(4 * time.Second)
			for i := 0; ; i++ {
				tc.poke(v, tn, i)
				_, err := verify(v, oldTok)
				if err != nil {
					refusal(t, err, ReasonKeyUnknown)
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the retired key's token is still accepted")
				}
			}
			mustVerify(t, v, newTok)
		})
	}
}

// keysOnly is the CacheSize of a test of the issuer's keys: with the
// verified-token cache off every verification reads the key set, so a test
// that keys survive a bad refresh is not answered by a remembered token.
const keysOnly = -1

// forceRefresh presents tokens under unknown kids until a JWKS refresh was
// reported, and returns what was reported. The verifier needs a short
// UnknownKIDInterval.
func forceRefresh(t *testing.T, v *Verifier, tn *idptest.Tenant, rec *recorder) []refreshEvent {
	t.Helper()
	from := rec.refreshCount()
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; ; i++ {
		_, err := verify(v, unknownKIDToken(tn, i))
		refusal(t, err, ReasonKeyUnknown)
		if ev := rec.refreshesSince(from); len(ev) > 0 {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatal("no JWKS refresh was reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jwksProxy serves tn's JWKS, or the body last given to serve.
func jwksProxy(t *testing.T, tn *idptest.Tenant) (url string, serve func(body string)) {
	t.Helper()
	var body atomic.Pointer[string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := body.Load(); b != nil {
			_, _ = io.WriteString(w, *b)
			return
		}
		resp, err := http.Get(tn.JWKSURL())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/jwks", func(b string) { body.Store(&b) }
}

// partlyBrokenJWKS is tn's current key plus a key that cannot be parsed.
func partlyBrokenJWKS(t *testing.T, tn *idptest.Tenant) string {
	t.Helper()
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal([]byte(fetchBody(t, tn.JWKSURL())), &set); err != nil {
		t.Fatal(err)
	}
	return `{"keys":[` + string(set.Keys[len(set.Keys)-1]) + `,{"kty":"RSA","kid":"broken-without-n-and-e"}]}`
}

// TestJWKSRefreshReportedGoodOnlyWhenApplied: a JWKS holding a new key next
// to a key that cannot be parsed is either applied (the new key verifies) or
// reported as a failed refresh, never reported good and then dropped.
func TestJWKSRefreshReportedGoodOnlyWhenApplied(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	url, serve := jwksProxy(t, tn)
	is := tenantIssuer("auth0", tn)
	is.JWKSURL = url
	rec := &recorder{}
	v := startVerifier(t, []Issuer{is}, Options{UnknownKIDInterval: 50 * time.Millisecond, OnJWKSRefresh: rec.onRefresh, CacheSize: keysOnly})
	waitReady(t, v, 5*time.Second)
	old := tn.Token(idptest.Claims{Audience: []string{testAud}})
	mustVerify(t, v, old)

	tn.AddKey("ES256")
	rotated := tn.Token(idptest.Claims{Audience: []string{testAud}})
	serve(partlyBrokenJWKS(t, tn))
	ev := forceRefresh(t, v, tn, rec)
	_, err := verify(v, rotated)
	reportedGood := slices.ContainsFunc(ev, func(e refreshEvent) bool { return e.err == nil })
	if reportedGood && err != nil {
		t.Errorf("a partly broken JWKS was reported good (OnJWKSRefresh %+v), but jwkset refused it and the new key is not loaded (%v)", ev, err)
	}
	if !reportedGood && err == nil {
		t.Errorf("the key set was applied but reported failed: %+v", ev)
	}
	mustVerify(t, v, old) // a refused set leaves the cached keys
}

// TestCachedTokenOfRetiredKeyIsRefusedAfterAPartlyBrokenJWKS: a key that
// left the JWKS stops working even when a partly broken JWKS came in
// between (the token cache must not outlive the key).
func TestCachedTokenOfRetiredKeyIsRefusedAfterAPartlyBrokenJWKS(t *testing.T) {
	t.Parallel()
	for _, cacheSize := range []int{-1, 0} {
		t.Run(fmt.Sprintf("CacheSize %d", cacheSize), func(t *testing.T) {
			t.Parallel()
			mustVerify := func(t *testing.T, v *Verifier, tok string) {
				t.Helper()
				if _, err := verify(v, tok); err != nil {
					t.Fatalf("Verify: %v", err)
				}
			}
			tn := idptest.NewTenant(t, idptest.ProviderAuth0)
			url, serve := jwksProxy(t, tn)
			is := tenantIssuer("auth0", tn)
			is.JWKSURL = url
			rec := &recorder{}
			v := startVerifier(t, []Issuer{is}, Options{UnknownKIDInterval: 50 * time.Millisecond, OnJWKSRefresh: rec.onRefresh, CacheSize: cacheSize})
			waitReady(t, v, 5*time.Second)
			old := tn.Token(idptest.Claims{Audience: []string{testAud}})
			mustVerify(t, v, old)

			tn.AddKey("ES256")
			tn.RetireOldKeys()
			rotated := tn.Token(idptest.Claims{Audience: []string{testAud}})
			serve(partlyBrokenJWKS(t, tn))
			forceRefresh(t, v, tn, rec)
			_, _ = verify(v, old) // whatever the answer, it may be cached now

			good := fetchBody(t, tn.JWKSURL())
			serve(good)
			waitFor(t, 3*time.Second, "the rotated key", func() bool {
				_, err := verify(v, rotated)
				return err == nil
			})
			_, err := verify(v, old)
			refusal(t, err, ReasonKeyUnknown)
		})
	}
}

// TestRemovedKeyIsRefusedOnceItsRemovalIsApplied: verifications that race a
// refresh removing their signing key may pass while the refresh is under way,
// but once the new key set is applied none passes, whatever the token cache
// remembered meanwhile. The refresh is held at the
// moment it is reported (OnJWKSRefresh runs once the guard has judged the
// response, before jwkset stores the set), so every verification in between
// falls in the window between the two.
func TestRemovedKeyIsRefusedOnceItsRemovalIsApplied(t *testing.T) {
	t.Parallel()
	const workers = 16
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	var armed atomic.Bool
	reported, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	v := startVerifier(t, []Issuer{tenantIssuer("auth0", tn)}, Options{
		UnknownKIDInterval: time.Minute, // the rotation's refresh is the only one
		OnJWKSRefresh: func(_ string, err error, _ int) {
			if err == nil && armed.CompareAndSwap(true, false) {
				close(reported)
				<-release
			}
		},
	})
	t.Cleanup(releaseOnce) // runs before the verifier is closed
	waitReady(t, v, 5*time.Second)
	aud := []string{testAud}
	old := tn.Token(idptest.Claims{Audience: aud})
	if _, err := verify(v, old); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	// each runs every worker at once and counts the old token's
	// acceptances.
	each := func() int64 {
		var accepted atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range 3 {
					if _, err := verify(v, old); err == nil {
						accepted.Add(1)
					} else if ReasonOf(err) != ReasonKeyUnknown {
						t.Errorf("the old token: %v, want %s or acceptance", err, ReasonKeyUnknown)
					}
				}
			})
		}
		wg.Wait()
		return accepted.Load()
	}

	tn.AddKey("ES256")
	tn.RetireOldKeys()
	rotated := tn.Token(idptest.Claims{Audience: aud})
	armed.Store(true)
	applied := make(chan error, 1)
	go func() { // its unknown kid makes the refresh that removes the old key
		_, err := verify(v, rotated)
		applied <- err
	}()
	select {
	case <-reported:
	case <-time.After(5 * time.Second):
		t.Fatal("the refresh that removes the old key was never reported")
	}
	t.Logf("while the refresh was held, the old token was accepted %d times of %d", each(), 3*workers)
	releaseOnce()
	if err := <-applied; err != nil {
		t.Fatalf("the rotated token, once its refresh was applied: %v", err)
	}
	if n := each(); n != 0 {
		t.Errorf("the removed key's token was accepted %d times of %d after the refresh that removed it was applied", n, 3*workers)
	}
}

// TestCachedKeysSurviveJWKSOutages: after the keys were loaded, refreshes
// that meet a down, garbage, empty, oversized or hanging JWKS endpoint fail,
// are reported, and leave the cached keys verifying.
func TestCachedKeysSurviveJWKSOutages(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	rec := &recorder{}
	v := startVerifier(t, []Issuer{tenantIssuer("auth0", tn)}, Options{
		UnknownKIDInterval: 30 * time.Millisecond,
		FetchTimeout:       250 * time.Millisecond,
		OnJWKSRefresh:      rec.onRefresh,
		CacheSize:          keysOnly,
	})
	waitReady(t, v, 5*time.Second)
	aud := []string{testAud}
	early := tn.Token(idptest.Claims{Audience: aud})
	mustVerify(t, v, early)

	for _, o := range []idptest.Outage{idptest.OutageDown, idptest.OutageGarbage, idptest.OutageEmpty, idptest.OutageOversized, idptest.OutageHang} {
		t.Run(o.String()+" endpoint keeps the cached keys", func(t *testing.T) {
			requests := tn.JWKSRequests()
			tn.SetOutage(o)
			for _, ev := range forceRefresh(t, v, tn, rec) {
				if ev.err == nil || ev.keys != 0 || ev.issuer != "auth0" {
					t.Errorf("OnJWKSRefresh(%q, %v, %d) during outage %s, want an error and 0 keys", ev.issuer, ev.err, ev.keys, o)
				}
			}
			if tn.JWKSRequests() == requests {
				t.Error("the forced refresh never reached the JWKS endpoint")
			}
			start := time.Now()
			mustVerify(t, v, early)
			mustVerify(t, v, tn.Token(idptest.Claims{Audience: aud}))
			if took := time.Since(start); took > 200*time.Millisecond {
				t.Errorf("verifying cached kids took %s during the outage", took)
			}
			tn.SetOutage(idptest.OutageNone)
			ev := forceRefresh(t, v, tn, rec)
			if last := ev[len(ev)-1]; last.err != nil || last.keys != 1 {
				t.Errorf("OnJWKSRefresh(%v, %d) after the outage, want no error and 1 key", last.err, last.keys)
			}
			mustVerify(t, v, early)
		})
	}
}

// TestBackgroundRefreshOutageKeepsKeys: the periodic refresh meeting an
// empty JWKS never empties the cache either.
func TestBackgroundRefreshOutageKeepsKeys(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderWorkOS)
	rec := &recorder{}
	v := startVerifier(t, []Issuer{tenantIssuer("workos", tn)}, Options{RefreshInterval: 50 * time.Millisecond, OnJWKSRefresh: rec.onRefresh, CacheSize: keysOnly})
	waitReady(t, v, 5*time.Second)
	tok := tn.Token(idptest.Claims{Audience: []string{testAud}})
	for _, o := range []idptest.Outage{idptest.OutageEmpty, idptest.OutageOversized} {
		from := rec.refreshCount()
		tn.SetOutage(o)
		waitFor(t, 3*time.Second, "two failed background refreshes", func() bool {
			n := 0
			for _, ev := range rec.refreshesSince(from) {
				if ev.err != nil {
					n++
				}
			}
			return n >= 2
		})
		mustVerify(t, v, tok)
	}
	from := rec.refreshCount()
	tn.SetOutage(idptest.OutageNone)
	waitFor(t, 3*time.Second, "a good background refresh", func() bool {
		return slices.ContainsFunc(rec.refreshesSince(from), func(ev refreshEvent) bool { return ev.err == nil && ev.keys == 1 })
	})
	mustVerify(t, v, tok)
}

// TestKeysLoadOnceTheFirstOutageEnds: with the tenant misbehaving from the
// start, the issuer stays pending and tokens get jwks_unavailable; the
// background retry loads the keys within seconds of the outage ending.
func TestKeysLoadOnceTheFirstOutageEnds(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderStytch)
	// Garbage and oversized bodies take the same path as an empty one (the
	// guard), see TestCachedKeysSurviveJWKSOutages.
	for _, o := range []idptest.Outage{idptest.OutageDown, idptest.OutageEmpty, idptest.OutageHang} {
		t.Run(o.String(), func(t *testing.T) {
			tn.SetOutage(o)
			defer tn.SetOutage(idptest.OutageNone)
			rec := &recorder{}
			v := startVerifier(t, []Issuer{tenantIssuer("stytch-live", tn)}, Options{
				FetchTimeout:  300 * time.Millisecond,
				OnJWKSRefresh: rec.onRefresh,
				OnValidation:  rec.onValidation,
			})
			waitFor(t, 3*time.Second, "a failed first fetch", func() bool { return rec.refreshCount() > 0 })
			if got := v.Pending(); !slices.Equal(got, []string{"stytch-live"}) {
				t.Errorf("Pending = %q, want [stytch-live]", got)
			}
			tok := tn.Token(idptest.Claims{Audience: []string{testAud}})
			_, err := verify(v, tok)
			if e := refusal(t, err, ReasonKeysUnavailable); e.Issuer != "stytch-live" {
				t.Errorf("Error.Issuer = %q", e.Issuer)
			}
			if got := rec.validationsSince(0); len(got) != 1 || got[0] != (validation{"stytch-live", ReasonKeysUnavailable}) {
				t.Errorf("OnValidation calls = %v", got)
			}
			for _, ev := range rec.refreshesSince(0) {
				if ev.err == nil || ev.keys != 0 {
					t.Errorf("OnJWKSRefresh(%v, %d) during the outage", ev.err, ev.keys)
				}
			}

			tn.SetOutage(idptest.OutageNone)
			ended := time.Now()
			waitReady(t, v, 5*time.Second)
			t.Logf("keys loaded %s after the outage ended", time.Since(ended))
			mustVerify(t, v, tok)
			ev := rec.refreshesSince(0)
			if last := ev[len(ev)-1]; last.err != nil || last.keys != 1 {
				t.Errorf("last OnJWKSRefresh(%v, %d), want no error and 1 key", last.err, last.keys)
			}
		})
	}
}

// TestJWKSGuardRefusesKeySetsWithoutVerificationKeys: a JWKS whose keys can
// never verify an accepted token must not replace the cached keys either.
func TestJWKSGuardRefusesKeySetsWithoutVerificationKeys(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	url, serve := jwksProxy(t, tn)
	is := tenantIssuer("auth0", tn)
	is.JWKSURL = url
	rec := &recorder{}
	v := startVerifier(t, []Issuer{is}, Options{UnknownKIDInterval: 50 * time.Millisecond, OnJWKSRefresh: rec.onRefresh, CacheSize: keysOnly})
	waitReady(t, v, 5*time.Second)
	tok := tn.Token(idptest.Claims{Audience: []string{testAud}})
	mustVerify(t, v, tok)

	bodies := []struct{ name, body string }{
		{"only unsupported keys", `{"keys":[{"kty":"OKP","crv":"X448","kid":"k2","x":"AAAA"}]}`},
		{"keys not an array", `{"keys":{}}`},
		{"null", `null`},
		{"only a symmetric (oct) key", `{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}`},
	}
	for _, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			serve(b.body)
			from := rec.refreshCount()
			waitFor(t, 3*time.Second, "a refresh", func() bool {
				_, _ = verify(v, unknownKIDToken(tn, 0))
				return rec.refreshCount() > from
			})
			for _, ev := range rec.refreshesSince(from) {
				if ev.err == nil {
					t.Errorf("a JWKS of %s was reported as a good fetch of %d keys", b.name, ev.keys)
				}
			}
			if _, err := verify(v, tok); err != nil {
				t.Fatalf("cached key lost after a JWKS of %s: %v", b.name, err)
			}
		})
	}
}

// TestJWKSResponseIsNotFollowedThroughRedirects: a redirect is a failed
// fetch, not a key set from wherever it points.
func TestJWKSResponseIsNotFollowedThroughRedirects(t *testing.T) {
	t.Parallel()
	var targetHits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
		_, _ = io.WriteString(w, `{"keys":[]}`)
	}))
	t.Cleanup(target.Close)
	srv := httptest.NewServer(http.RedirectHandler(target.URL+"/jwks", http.StatusFound))
	t.Cleanup(srv.Close)
	rec := &recorder{}
	is := Issuer{Name: "redirected", Provider: "oidc", Issuer: srv.URL, Audiences: []string{testAud}, JWKSURL: srv.URL + "/jwks"}
	v := startVerifier(t, []Issuer{is}, Options{OnJWKSRefresh: rec.onRefresh})
	waitFor(t, 3*time.Second, "a failed fetch", func() bool { return rec.refreshCount() > 0 })
	if ev := rec.refreshesSince(0)[0]; ev.err == nil {
		t.Errorf("a 302 was reported as a good fetch of %d keys", ev.keys)
	}
	if p := v.Pending(); len(p) != 1 {
		t.Errorf("Pending = %q, want the issuer", p)
	}
	if n := targetHits.Load(); n != 0 {
		t.Errorf("the redirect target was fetched %d times", n)
	}
}

// TestJWKSLocation: for each provider's tenant, the preset (auth0, workos,
// stytch) fetches its JWKS path at the issuer's origin without discovery;
// provider oidc without jwks_url discovers it through the issuer's
// /.well-known/openid-configuration.
func TestJWKSLocation(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{idptest.ProviderAuth0, idptest.ProviderWorkOS, idptest.ProviderStytch} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			tn := idptest.NewTenant(t, provider)
			tok := tn.Token(idptest.Claims{Audience: []string{testAud}})

			preset := &recordingTransport{}
			is := tenantIssuer(provider, tn)
			is.JWKSURL = ""
			pv := startVerifier(t, []Issuer{is}, Options{Transport: preset})

			discovered := &recordingTransport{}
			generic := Issuer{Name: "generic", Provider: "oidc", Issuer: tn.Issuer(), Audiences: []string{testAud}}
			dv := startVerifier(t, []Issuer{generic}, Options{Transport: discovered})

			waitReady(t, pv, 5*time.Second)
			waitReady(t, dv, 5*time.Second)
			if p := mustVerify(t, pv, tok); p.Provider != provider {
				t.Errorf("Provider = %q, want %s", p.Provider, provider)
			}
			if got, want := preset.fetched(), []string{tn.JWKSURL()}; !slices.Equal(got, want) {
				t.Errorf("%s preset fetched %q, want only %q", provider, got, want)
			}
			if p := mustVerify(t, dv, tok); p.Provider != "oidc" {
				t.Errorf("Provider = %q, want oidc", p.Provider)
			}
			if got, want := discovered.fetched(), []string{tn.URL() + "/.well-known/openid-configuration", tn.JWKSURL()}; !slices.Equal(got, want) {
				t.Errorf("oidc discovery fetched %q, want %q", got, want)
			}
		})
	}
}

// TestRFC8414DiscoveryFallback: when the OIDC document is missing, the RFC
// 8414 document (well-known suffix inserted before the issuer's path) is used.
func TestRFC8414DiscoveryFallback(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderWorkOS)
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server/tenant-a", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": tn.JWKSURL()})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = srv.URL + "/tenant-a"

	rt := &recordingTransport{}
	v := startVerifier(t, []Issuer{{Name: "as", Provider: "oidc", Issuer: issuer, Audiences: []string{testAud}}}, Options{Transport: rt})
	waitReady(t, v, 5*time.Second)
	tok := tn.Sign(nil, withClaims(tn.Layout(idptest.Claims{Audience: []string{testAud}}), map[string]any{"iss": issuer}))
	if p := mustVerify(t, v, tok); p.Iss != issuer {
		t.Errorf("Iss = %q", p.Iss)
	}
	want := []string{issuer + "/.well-known/openid-configuration", srv.URL + "/.well-known/oauth-authorization-server/tenant-a", tn.JWKSURL()}
	if got := rt.fetched(); !slices.Equal(got, want) {
		t.Errorf("fetched %q, want %q", got, want)
	}
}

// TestDiscoveryRefusals: a discovery document naming another issuer, or a
// jwks_uri over http:// on a non-loopback host, never loads keys.
func TestDiscoveryRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     func(self string) map[string]string
		wantLog string
	}{
		{
			name: "document naming a different issuer is refused",
			doc: func(self string) map[string]string {
				return map[string]string{"issuer": "https://impostor.example", "jwks_uri": self + "/jwks"}
			},
			wantLog: "names issuer",
		},
		{
			name: "document naming the issuer with another trailing slash is refused",
			doc: func(self string) map[string]string {
				return map[string]string{"issuer": self + "/", "jwks_uri": self + "/jwks"}
			},
			wantLog: "names issuer",
		},
		{
			name: "http jwks_uri on a non-loopback host is refused",
			doc: func(self string) map[string]string {
				return map[string]string{"issuer": self, "jwks_uri": "http://jwks.example.com/keys"}
			},
			wantLog: "not loopback",
		},
		{
			name: "relative jwks_uri is refused",
			doc: func(self string) map[string]string {
				return map[string]string{"issuer": self, "jwks_uri": "/keys"}
			},
			wantLog: "not an absolute URL",
		},
		{
			name:    "document without jwks_uri is refused",
			doc:     func(self string) map[string]string { return map[string]string{"issuer": self} },
			wantLog: "jwks_uri",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var self string
			var docRequests, jwksRequests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/.well-known/openid-configuration":
					docRequests.Add(1)
					_ = json.NewEncoder(w).Encode(tc.doc(self))
				case "/jwks":
					jwksRequests.Add(1)
					_, _ = io.WriteString(w, `{"keys":[]}`)
				default:
					http.NotFound(w, r)
				}
			}))
			t.Cleanup(srv.Close)
			self = srv.URL

			logs := &logBuffer{}
			rt := &recordingTransport{}
			v := startVerifier(t, []Issuer{{Name: "suspect", Provider: "oidc", Issuer: self, Audiences: []string{testAud}}}, Options{Transport: rt, Logger: logs.logger()})
			waitFor(t, 3*time.Second, "a refused discovery", func() bool { return docRequests.Load() >= 1 && strings.Contains(logs.String(), tc.wantLog) })
			if got := v.Pending(); !slices.Equal(got, []string{"suspect"}) {
				t.Errorf("Pending = %q", got)
			}
			// The keys are looked up before the signature is checked.
			tok := b64url(`{"alg":"RS256","kid":"k1"}`) + "." + b64url(`{"iss":"`+self+`","sub":"u","aud":"`+testAud+`","exp":9999999999}`) + ".c2ln"
			_, err := verify(v, tok)
			refusal(t, err, ReasonKeysUnavailable)
			if n := jwksRequests.Load(); n != 0 {
				t.Errorf("the JWKS named by the refused document was fetched %d times", n)
			}
			for _, u := range rt.fetched() {
				if !strings.HasPrefix(u, self+"/") {
					t.Errorf("fetched %s", u)
				}
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log does not say %q:\n%s", tc.wantLog, logs)
			}
		})
	}
}

// TestJWKSURLResolution: explicit URL, presets and their errors, without
// fetching anything.
func TestJWKSURLResolution(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		is      Issuer
		want    string
		wantErr string
	}{
		{"explicit jwks_url wins over the preset", Issuer{Provider: "auth0", Issuer: "https://t.auth0.com/", JWKSURL: "https://keys.example/jwks"}, "https://keys.example/jwks", ""},
		{"auth0 preset", Issuer{Provider: "auth0", Issuer: "https://t.us.auth0.com/"}, "https://t.us.auth0.com/.well-known/jwks.json", ""},
		{"workos preset", Issuer{Provider: "workos", Issuer: "https://x.authkit.app"}, "https://x.authkit.app/oauth2/jwks", ""},
		{"stytch preset", Issuer{Provider: "stytch", Issuer: "https://x.customers.stytch.dev"}, "https://x.customers.stytch.dev/.well-known/jwks.json", ""},
		{"preset is at the issuer's origin, not under its path", Issuer{Provider: "auth0", Issuer: "https://login.example.com/tenant/"}, "https://login.example.com/.well-known/jwks.json", ""},
		{"stytch issuer without a scheme needs jwks_url", Issuer{Provider: "stytch", Issuer: "stytch.com/project-test-123"}, "", "set jwks_url"},
		{"stytch issuer without a scheme with jwks_url", Issuer{Provider: "stytch", Issuer: "stytch.com/project-test-123", JWKSURL: "https://api.stytch.com/v1/sessions/jwks/project-test-123"}, "https://api.stytch.com/v1/sessions/jwks/project-test-123", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				t.Errorf("unexpected fetch of %s", r.URL)
				return nil, fmt.Errorf("no fetching here")
			})}
			got, err := jwksURL(context.Background(), client, tc.is)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("jwksURL = %q, %v; want an error saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("jwksURL = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDiscoveryURLs: the OIDC form appends the suffix, the RFC 8414 form
// inserts it before the path.
func TestDiscoveryURLs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://t.auth0.com/", []string{"https://t.auth0.com/.well-known/openid-configuration", "https://t.auth0.com/.well-known/oauth-authorization-server"}},
		{"https://x.authkit.app", []string{"https://x.authkit.app/.well-known/openid-configuration", "https://x.authkit.app/.well-known/oauth-authorization-server"}},
		{"https://as.example/realms/a/", []string{"https://as.example/realms/a/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server/realms/a"}},
		{"stytch.com/project-1", []string{"stytch.com/project-1/.well-known/openid-configuration"}},
	}
	for _, tc := range tests {
		t.Run(tc.issuer, func(t *testing.T) {
			if got := discoveryURLs(tc.issuer); !slices.Equal(got, tc.want) {
				t.Errorf("discoveryURLs = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestUsableKeys lists the kids of the keys a JWKS body holds and refuses
// one with none.
func TestUsableKeys(t *testing.T) {
	t.Parallel()
	var keys []string
	var kids []string
	for i := range 2 {
		d := mustDevIssuer(t, filepath.Join(t.TempDir(), fmt.Sprintf("k%d.pem", i)), devIss, devAud)
		j, err := d.JWKS()
		if err != nil {
			t.Fatal(err)
		}
		var set struct{ Keys []json.RawMessage }
		if err := json.Unmarshal(j, &set); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, string(set.Keys[0]))
		kids = append(kids, d.kid)
	}
	tests := []struct {
		name  string
		body  string
		want  []string
		isErr bool
	}{
		{"two EC keys", `{"keys":[` + strings.Join(keys, ",") + `]}`, kids, false},
		{"one good key beside an unsupported one", `{"keys":[` + keys[0] + `,{"kty":"OKP","crv":"X448","x":"AA"}]}`, kids[:1], false},
		{"one good key beside a broken one: jwkset refuses the set, so do we", `{"keys":[` + keys[0] + `,{"kty":"RSA","kid":"bad"}]}`, nil, true},
		{"only a symmetric key", `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, nil, true},
		{"empty key set", `{"keys":[]}`, nil, true},
		{"no keys member", `{}`, nil, true},
		{"HTML", `<html>maintenance</html>`, nil, true},
		{"JSON array", `[]`, nil, true},
		{"only broken keys", `{"keys":[{"kty":"RSA","kid":"bad"}]}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := usableKeys([]byte(tc.body))
			if (err != nil) != tc.isErr || !slices.Equal(got, tc.want) {
				t.Errorf("usableKeys = %q, %v; want %q, error %v", got, err, tc.want, tc.isErr)
			}
		})
	}
}

func fetchBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadBounded: bodies up to MaxJWKSBytes are read, one byte more is not.
func TestReadBounded(t *testing.T) {
	t.Parallel()
	b, err := readBounded(strings.NewReader(strings.Repeat("a", MaxJWKSBytes)))
	if err != nil || len(b) != MaxJWKSBytes {
		t.Errorf("at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := readBounded(strings.NewReader(strings.Repeat("a", MaxJWKSBytes+1))); err == nil {
		t.Error("one byte over the limit was read")
	}
}

// TestDiscoveryNeverFetchesPlainHTTPThroughRedirects: a discovery document
// that redirects to http:// on a non-loopback host must not be fetched
// (docs/configuration.md, "URLs toolgate fetches or publishes": http:// URLs
// that toolgate fetches, discovery included, are refused unless their host is
// loopback).
func TestDiscoveryNeverFetchesPlainHTTPThroughRedirects(t *testing.T) {
	t.Parallel()
	const target = "http://discovery.example.com/.well-known/openid-configuration"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			http.Redirect(w, r, target, http.StatusFound)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	rt := &recordingTransport{}
	v := startVerifier(t, []Issuer{{Name: "redirecting", Provider: "oidc", Issuer: srv.URL, Audiences: []string{testAud}}}, Options{Transport: rt})
	waitFor(t, 3*time.Second, "a discovery attempt", func() bool { return len(rt.fetched()) >= 2 })
	if p := v.Pending(); len(p) != 1 {
		t.Errorf("Pending = %q, want the issuer", p)
	}
	if slices.Contains(rt.fetched(), target) {
		t.Error("a discovery redirect to plain http on a non-loopback host was followed; fetched " + strings.Join(rt.fetched(), ", "))
	}
}
