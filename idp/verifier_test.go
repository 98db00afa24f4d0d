package idp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp/idptest"
)

// testAud is the resource every test issuer is configured for.
const testAud = "https://mcp.example.com/mcp"

// secondAud is a second audience some test issuers accept.
const secondAud = "https://second.example/mcp"

// ---- helpers shared by the package's tests ----

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// tenantIssuer configures tn as a trusted issuer named name, with its JWKS URL
// given explicitly.
func tenantIssuer(name string, tn *idptest.Tenant) Issuer {
	return Issuer{
		Name:      name,
		Provider:  tn.Provider(),
		Issuer:    tn.Issuer(),
		Audiences: []string{testAud},
		JWKSURL:   tn.JWKSURL(),
	}
}

// startVerifier builds a verifier, starts it for the test's lifetime and
// closes it at cleanup (before the tenants, which were created earlier).
func startVerifier(t *testing.T, issuers []Issuer, opts Options) *Verifier {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	v, err := NewVerifier(issuers, opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	v.Start(t.Context())
	t.Cleanup(v.Close)
	return v
}

// waitReady polls Pending until every issuer's keys were fetched once.
func waitReady(t *testing.T, v *Verifier, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p := v.Pending()
		if len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuers still pending after %s: %q", within, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verify calls Verify with a bounded context.
func verify(v *Verifier, tok string) (*Principal, error) {
	return verifyIn(context.Background(), v, tok)
}

// verifyIn is verify in the context of a request.
func verifyIn(ctx context.Context, v *Verifier, tok string) (*Principal, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return v.Verify(ctx, tok)
}

// mustVerify fails the test unless tok is accepted.
func mustVerify(t *testing.T, v *Verifier, tok string) *Principal {
	t.Helper()
	p, err := verify(v, tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return p
}

// refusal checks that err is an *Error with reason want and returns it.
func refusal(t *testing.T, err error, want Reason) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("Verify accepted the token, want %s", want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Verify error %T (%v) is not an *idp.Error", err, err)
	}
	if e.Reason != want {
		t.Fatalf("reason = %s (%v), want %s", e.Reason, err, want)
	}
	return e
}

// segments decodes the header and payload of tok without verifying it.
func segments(t *testing.T, tok string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("decode segment: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("decode segment: %v", err)
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// flipSignature changes one character in the middle of the signature (the
// last character may only carry padding bits).
func flipSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig := []byte(tok[i+1:])
	j := len(sig) / 2
	if sig[j] == 'A' {
		sig[j] = 'B'
	} else {
		sig[j] = 'A'
	}
	return tok[:i+1] + string(sig)
}

// withClaims returns claims with extra applied (a nil value deletes).
func withClaims(claims map[string]any, extra map[string]any) map[string]any {
	out := make(map[string]any, len(claims)+len(extra))
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range extra {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// recorder collects the verifier's callbacks; safe for concurrent use.
type recorder struct {
	mu          sync.Mutex
	refreshes   []refreshEvent
	validations []validation
}

type refreshEvent struct {
	issuer string
	err    error
	keys   int
}

type validation struct {
	issuer string
	reason Reason
}

func (r *recorder) onRefresh(issuer string, err error, keys int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshes = append(r.refreshes, refreshEvent{issuer, err, keys})
}

func (r *recorder) onValidation(issuer string, reason Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.validations = append(r.validations, validation{issuer, reason})
}

func (r *recorder) refreshCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.refreshes)
}

func (r *recorder) refreshesSince(i int) []refreshEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.refreshes[i:])
}

func (r *recorder) validationsSince(i int) []validation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.validations[i:])
}

func (r *recorder) validationCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.validations)
}

// logBuffer is a concurrency-safe sink for a text slog handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// recordingTransport records every URL fetched and refuses to leave loopback,
// so that no test ever reaches the network.
type recordingTransport struct {
	mu   sync.Mutex
	urls []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.urls = append(rt.urls, r.URL.String())
	rt.mu.Unlock()
	host := r.URL.Hostname()
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("test transport: refusing non-loopback host %q", host)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (rt *recordingTransport) fetched() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.urls)
}

// ---- tests ----

// TestVerifyRefusesBadTokens has one row per class of bad token, each with
// the reason code Verify must give, and the rows just inside the leeway that
// must pass.
func TestVerifyRefusesBadTokens(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	other := idptest.NewTenant(t, idptest.ProviderAuth0) // another tenant, also trusted
	rec := &recorder{}
	is := tenantIssuer("tenant", tn)
	is.Audiences = []string{testAud, secondAud}
	v := startVerifier(t, []Issuer{is, tenantIssuer("other", other)}, Options{
		// An unknown kid refreshes once; later ones within the minute fail
		// at once instead of waiting for the limiter.
		UnknownKIDInterval: time.Minute,
		OnValidation:       rec.onValidation,
	})
	waitReady(t, v, 5*time.Second)

	now := time.Now()
	aud := []string{testAud}
	base := tn.Layout(idptest.Claims{Audience: aud})
	claims := func(extra map[string]any) map[string]any { return withClaims(base, extra) }
	good := tn.Sign(nil, base)
	goodParts := strings.Split(good, ".")

	// A valid token just under and one just over MaxTokenBytes.
	padded := func(n int) string {
		return tn.Sign(nil, claims(map[string]any{"x_pad": strings.Repeat("p", n)}))
	}
	n := (MaxTokenBytes - len(good)) * 3 / 4
	for len(padded(n)) > MaxTokenBytes {
		n--
	}
	for len(padded(n+1)) <= MaxTokenBytes {
		n++
	}
	atLimit, overLimit := padded(n), padded(n+1)
	if len(atLimit) > MaxTokenBytes || len(overLimit) <= MaxTokenBytes {
		t.Fatalf("padding: %d and %d bytes around the %d limit", len(atLimit), len(overLimit), MaxTokenBytes)
	}

	tests := []struct {
		name       string
		tok        string
		want       Reason // "" means accepted
		wantIssuer string // the *Error's Issuer
	}{
		{name: "valid token is accepted", tok: good},

		// alg
		{name: "alg none is refused", tok: tn.Sign(map[string]any{"alg": "none"}, base), want: ReasonAlgNotAllowed},
		{name: "alg NONE in upper case is refused", tok: tn.Sign(map[string]any{"alg": "NONE"}, base), want: ReasonAlgNotAllowed},
		{name: "alg none with a copied signature is refused", tok: strings.Join([]string{b64url(`{"alg":"none","kid":"` + tn.CurrentKID() + `"}`), goodParts[1], goodParts[2]}, "."), want: ReasonAlgNotAllowed},
		{name: "HS256 keyed with the issuer's public key PEM is refused", tok: tn.Sign(map[string]any{"alg": "HS256"}, base), want: ReasonAlgNotAllowed},
		{name: "HS512 keyed with the issuer's public key PEM is refused", tok: tn.Sign(map[string]any{"alg": "HS512"}, base), want: ReasonAlgNotAllowed},
		{name: "header without alg is refused", tok: tn.Sign(map[string]any{"alg": nil}, base), want: ReasonAlgNotAllowed},

		// kid and key
		{name: "unknown kid is refused", tok: tn.Sign(map[string]any{"kid": "no-such-kid"}, base), want: ReasonKeyUnknown, wantIssuer: "tenant"},
		{name: "token of another tenant relabelled with this issuer is refused", tok: other.Sign(nil, claims(nil)), want: ReasonKeyUnknown, wantIssuer: "tenant"},
		{name: "kid of one trusted issuer under the iss of another is refused", tok: tn.Sign(nil, claims(map[string]any{"iss": other.Issuer()})), want: ReasonKeyUnknown, wantIssuer: "other"},
		{name: "alg that differs from the JWK's alg is refused", tok: tn.Sign(map[string]any{"alg": "RS384"}, base), want: ReasonKeyUnknown, wantIssuer: "tenant"},

		// signature
		{name: "signature with one character flipped is refused", tok: flipSignature(good), want: ReasonSignatureInvalid, wantIssuer: "tenant"},
		{name: "signature by another tenant's key under this tenant's kid is refused", tok: other.Sign(map[string]any{"kid": tn.CurrentKID()}, base), want: ReasonSignatureInvalid, wantIssuer: "tenant"},
		{name: "empty signature is refused", tok: goodParts[0] + "." + goodParts[1] + ".", want: ReasonSignatureInvalid, wantIssuer: "tenant"},
		{name: "payload changed after signing is refused", tok: goodParts[0] + "." + b64url(mustJSON(t, claims(map[string]any{"sub": "admin"}))) + "." + goodParts[2], want: ReasonSignatureInvalid, wantIssuer: "tenant"},

		// exp, nbf, iat
		{name: "expired an hour ago is refused", tok: tn.Token(idptest.Claims{Audience: aud, IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour}), want: ReasonExpired, wantIssuer: "tenant"},
		{name: "expired 40s ago (beyond the 30s leeway) is refused", tok: tn.Sign(nil, claims(map[string]any{"exp": now.Add(-40 * time.Second).Unix()})), want: ReasonExpired, wantIssuer: "tenant"},
		{name: "expired 20s ago (inside the 30s leeway) is accepted", tok: tn.Sign(nil, claims(map[string]any{"exp": now.Add(-20 * time.Second).Unix()}))},
		{name: "nbf 60s in the future is refused", tok: tn.Token(idptest.Claims{Audience: aud, NotBefore: now.Add(time.Minute)}), want: ReasonNotYetValid, wantIssuer: "tenant"},
		{name: "nbf 20s in the future (inside the leeway) is accepted", tok: tn.Token(idptest.Claims{Audience: aud, NotBefore: now.Add(20 * time.Second)})},
		{name: "iat 60s in the future is refused", tok: tn.Token(idptest.Claims{Audience: aud, IssuedAt: now.Add(time.Minute)}), want: ReasonIssuedInFuture, wantIssuer: "tenant"},
		{name: "iat 20s in the future (inside the leeway) is accepted", tok: tn.Token(idptest.Claims{Audience: aud, IssuedAt: now.Add(20 * time.Second)})},
		{name: "missing exp is refused", tok: tn.Sign(nil, claims(map[string]any{"exp": nil})), want: ReasonExpMissing, wantIssuer: "tenant"},
		{name: "exp that is not a number is refused", tok: tn.Sign(nil, claims(map[string]any{"exp": "tomorrow"})), want: ReasonClaimsInvalid, wantIssuer: "tenant"},

		// iss
		{name: "iss of no configured issuer is refused", tok: tn.Sign(nil, claims(map[string]any{"iss": "https://evil.example/"})), want: ReasonIssuerUnknown},
		{name: "iss without the configured trailing slash is refused", tok: tn.Sign(nil, claims(map[string]any{"iss": strings.TrimSuffix(tn.Issuer(), "/")})), want: ReasonIssuerUnknown},
		{name: "missing iss is refused", tok: tn.Sign(nil, claims(map[string]any{"iss": nil})), want: ReasonIssuerUnknown},
		{name: "iss that is not a string is refused", tok: tn.Sign(nil, claims(map[string]any{"iss": []string{tn.Issuer()}})), want: ReasonIssuerUnknown},

		// aud
		{name: "aud string of another resource is refused", tok: tn.Sign(nil, claims(map[string]any{"aud": "https://other.example/api"})), want: ReasonAudienceMismatch, wantIssuer: "tenant"},
		{name: "aud array without the resource is refused", tok: tn.Sign(nil, claims(map[string]any{"aud": []string{"https://other.example/api", tn.Issuer() + "userinfo"}})), want: ReasonAudienceMismatch, wantIssuer: "tenant"},
		{name: "aud that only prefixes the resource is refused", tok: tn.Sign(nil, claims(map[string]any{"aud": strings.TrimSuffix(testAud, "/mcp")})), want: ReasonAudienceMismatch, wantIssuer: "tenant"},
		{name: "aud naming the issuer's second configured audience is accepted", tok: tn.Sign(nil, claims(map[string]any{"aud": secondAud}))},
		{name: "aud array with the issuer's second audience is accepted", tok: tn.Sign(nil, claims(map[string]any{"aud": []string{"https://x.example", secondAud}}))},
		{name: "aud accepted by another trusted issuer only is refused (audiences are per issuer)", tok: other.Sign(nil, withClaims(other.Layout(idptest.Claims{}), map[string]any{"aud": secondAud})), want: ReasonAudienceMismatch, wantIssuer: "other"},
		{name: "missing aud is refused", tok: tn.Token(idptest.Claims{}), want: ReasonAudienceMissing, wantIssuer: "tenant"},
		{name: "empty aud array is refused", tok: tn.Sign(nil, claims(map[string]any{"aud": []string{}})), want: ReasonAudienceMissing, wantIssuer: "tenant"},

		// sub
		{name: "missing sub is refused", tok: tn.Sign(nil, claims(map[string]any{"sub": nil})), want: ReasonSubjectMissing, wantIssuer: "tenant"},
		{name: "empty sub is refused", tok: tn.Sign(nil, claims(map[string]any{"sub": ""})), want: ReasonSubjectMissing, wantIssuer: "tenant"},
		{name: "sub that is not a string is refused", tok: tn.Sign(nil, claims(map[string]any{"sub": 42})), want: ReasonSubjectMissing, wantIssuer: "tenant"},

		// size
		{name: "valid token of exactly the size limit or just under is accepted", tok: atLimit},
		{name: "token one step over 16 KiB is refused", tok: overLimit, want: ReasonTooLarge},
		{name: "64 KiB of junk is refused as too large", tok: strings.Repeat("a.", 32<<10), want: ReasonTooLarge},

		// malformed
		{name: "two segments are malformed", tok: goodParts[0] + "." + goodParts[1], want: ReasonMalformed},
		{name: "four segments are malformed", tok: good + "." + goodParts[2], want: ReasonMalformed},
		{name: "one segment is malformed", tok: goodParts[1], want: ReasonMalformed},
		{name: "empty string is malformed", tok: "", want: ReasonMalformed},
		{name: "three empty segments are malformed", tok: "..", want: ReasonMalformed},
		{name: "bad base64 in the header is malformed", tok: "!!!" + good, want: ReasonMalformed},
		{name: "bad base64 in the payload is malformed", tok: goodParts[0] + ".*" + goodParts[1] + "." + goodParts[2], want: ReasonMalformed},
		{name: "bad base64 in the signature is malformed", tok: goodParts[0] + "." + goodParts[1] + ".***", want: ReasonMalformed},
		{name: "padded base64 is malformed", tok: goodParts[0] + "==." + goodParts[1] + "." + goodParts[2], want: ReasonMalformed},
		{name: "header that is not JSON is malformed", tok: b64url("not json") + "." + goodParts[1] + "." + goodParts[2], want: ReasonMalformed},
		{name: "header that is a JSON array is malformed", tok: b64url(`["RS256"]`) + "." + goodParts[1] + "." + goodParts[2], want: ReasonMalformed},
		{name: "payload that is not JSON is malformed", tok: goodParts[0] + "." + b64url("sub=admin") + "." + goodParts[2], want: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.validationCount()
			p, err := verify(v, tc.tok)
			got := rec.validationsSince(before)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Sub == "" || p.Issuer != "tenant" {
					t.Errorf("principal sub %q issuer %q", p.Sub, p.Issuer)
				}
				if want := []validation{{"tenant", ""}}; !reflect.DeepEqual(got, want) {
					t.Errorf("OnValidation calls = %v, want %v", got, want)
				}
				return
			}
			if p != nil {
				t.Errorf("Verify returned a principal with its error: %+v", p)
			}
			e := refusal(t, err, tc.want)
			if e.Issuer != tc.wantIssuer {
				t.Errorf("Error.Issuer = %q, want %q", e.Issuer, tc.wantIssuer)
			}
			if want := []validation{{tc.wantIssuer, tc.want}}; !reflect.DeepEqual(got, want) {
				t.Errorf("OnValidation calls = %v, want %v", got, want)
			}
			assertNoTokenInError(t, err, tc.tok)
		})
	}
}

// assertNoTokenInError checks that the error text holds neither the token
// nor any sizeable segment of it.
func assertNoTokenInError(t *testing.T, err error, tok string) {
	t.Helper()
	msg := err.Error()
	if tok != "" && strings.Contains(msg, tok) {
		t.Errorf("error text contains the raw token: %q", msg)
	}
	for i, seg := range strings.Split(tok, ".") {
		if len(seg) >= 16 && strings.Contains(msg, seg) {
			t.Errorf("error text contains segment %d of the token: %q", i, msg)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVerifyLeewayBoundaries pins the leeway with a fixed clock: a claim
// exactly at the leeway's edge and one second beyond it.
func TestVerifyLeewayBoundaries(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderWorkOS)
	now := time.Now().Truncate(time.Second).Add(-time.Hour) // any fixed instant
	clock := func() time.Time { return now }
	def := startVerifier(t, []Issuer{tenantIssuer("default", tn)}, Options{Now: clock})
	short := startVerifier(t, []Issuer{tenantIssuer("short", tn)}, Options{Now: clock, Leeway: 5 * time.Second})
	waitReady(t, def, 5*time.Second)
	waitReady(t, short, 5*time.Second)

	at := func(offset time.Duration) int64 { return now.Add(offset).Unix() }
	sign := func(extra map[string]any) string {
		return tn.Sign(nil, withClaims(tn.Layout(idptest.Claims{Audience: []string{testAud}, IssuedAt: now.Add(-time.Minute)}), extra))
	}
	tests := []struct {
		name string
		v    *Verifier
		tok  string
		want Reason
	}{
		{"exp 29s ago is accepted with the default leeway", def, sign(map[string]any{"exp": at(-29 * time.Second)}), ""},
		{"exp exactly 30s ago is refused with the default leeway", def, sign(map[string]any{"exp": at(-30 * time.Second)}), ReasonExpired},
		{"nbf 30s ahead is accepted with the default leeway", def, sign(map[string]any{"nbf": at(30 * time.Second)}), ""},
		{"nbf 31s ahead is refused with the default leeway", def, sign(map[string]any{"nbf": at(31 * time.Second)}), ReasonNotYetValid},
		{"iat 30s ahead is accepted with the default leeway", def, sign(map[string]any{"iat": at(30 * time.Second)}), ""},
		{"iat 31s ahead is refused with the default leeway", def, sign(map[string]any{"iat": at(31 * time.Second)}), ReasonIssuedInFuture},
		{"exp 4s ago is accepted with a 5s leeway", short, sign(map[string]any{"exp": at(-4 * time.Second)}), ""},
		{"exp 6s ago is refused with a 5s leeway", short, sign(map[string]any{"exp": at(-6 * time.Second)}), ReasonExpired},
		{"nbf 6s ahead is refused with a 5s leeway", short, sign(map[string]any{"nbf": at(6 * time.Second)}), ReasonNotYetValid},
		{"iat 6s ahead is refused with a 5s leeway", short, sign(map[string]any{"iat": at(6 * time.Second)}), ReasonIssuedInFuture},
		{"the verifier's clock (Options.Now) is used: a token issued now is in the future of a clock an hour behind", def, tn.Token(idptest.Claims{Audience: []string{testAud}}), ReasonIssuedInFuture},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify(tc.v, tc.tok)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			refusal(t, err, tc.want)
		})
	}
}

// TestProviderTokens: tokens of Auth0, WorkOS and Stytch tenants, with aud
// as a string and as an array, signed with several key algorithms, are
// accepted, and their claims are normalised per provider (the table is in
// normalise_test.go). The tenants are shared to save RSA key generation.
func TestProviderTokens(t *testing.T) {
	t.Parallel()
	a0 := idptest.NewTenant(t, idptest.ProviderAuth0)
	wo := idptest.NewTenant(t, idptest.ProviderWorkOS)
	st := idptest.NewTenant(t, idptest.ProviderStytch)
	aud := []string{testAud}

	// Tokens signed by each of several published keys (the JWKS then holds
	// RS256, ES256 and PS256 keys).
	rs256 := a0.Token(idptest.Claims{Audience: aud})
	a0.AddKey("ES256")
	es256 := a0.Token(idptest.Claims{Audience: aud})
	a0.AddKey("PS256")
	ps256 := a0.Token(idptest.Claims{Audience: aud})

	v := startVerifier(t, []Issuer{tenantIssuer("auth0", a0), tenantIssuer("workos", wo), tenantIssuer("stytch", st)}, Options{})
	waitReady(t, v, 5*time.Second)

	tests := []struct {
		name    string
		tn      *idptest.Tenant
		issuer  string
		tok     string
		audForm string // "string" or "array": the shape the token really has
		alg     string
	}{
		{"auth0 token with aud as a string", a0, "auth0", a0.Token(idptest.Claims{Audience: aud}), "string", "PS256"},
		{"auth0 token with aud as an array including userinfo (openid)", a0, "auth0", a0.Token(idptest.Claims{Audience: aud, Scopes: []string{"openid", "profile"}}), "array", "PS256"},
		{"auth0 token with aud as an array of two APIs", a0, "auth0", a0.Token(idptest.Claims{Audience: []string{"https://other.example/api", testAud}}), "array", "PS256"},
		{"auth0 token signed with an RS256 key", a0, "auth0", rs256, "string", "RS256"},
		{"auth0 token signed with an ES256 key", a0, "auth0", es256, "string", "ES256"},
		{"auth0 token signed with a PS256 key", a0, "auth0", ps256, "string", "PS256"},
		{"auth0 RFC 9068 token with typ at+jwt", a0, "auth0", a0.Sign(map[string]any{"typ": "at+jwt"}, a0.Layout(idptest.Claims{Audience: aud})), "string", "PS256"},
		{"auth0 token without typ", a0, "auth0", a0.Sign(map[string]any{"typ": nil}, a0.Layout(idptest.Claims{Audience: aud})), "string", "PS256"},
		{"workos token with aud as a string", wo, "workos", wo.Token(idptest.Claims{Audience: aud}), "string", "RS256"},
		{"workos token with aud as an array", wo, "workos", wo.Token(idptest.Claims{Audience: []string{testAud, "client_01"}}), "array", "RS256"},
		{"stytch token with aud as an array", st, "stytch", st.Token(idptest.Claims{Audience: aud}), "array", "RS256"},
		{"stytch token with aud as a string", st, "stytch", st.Token(idptest.Claims{Audience: aud, Extra: map[string]any{"aud": testAud}}), "string", "RS256"},
		{"stytch B2B token with organization and session claims", st, "stytch", st.Token(idptest.Claims{Audience: aud, OrgID: "organization-test-1", Roles: []string{"stytch_member"}}), "array", "RS256"},
	}
	t.Run("valid tokens are accepted", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h, c := segments(t, tc.tok)
				switch a := c["aud"].(type) {
				case string:
					if tc.audForm != "string" {
						t.Fatalf("aud is a string, the row wants %s", tc.audForm)
					}
				case []any:
					if tc.audForm != "array" {
						t.Fatalf("aud is an array, the row wants %s", tc.audForm)
					}
				default:
					t.Fatalf("aud is %T", a)
				}
				if h["alg"] != tc.alg {
					t.Fatalf("alg is %v, the row wants %s", h["alg"], tc.alg)
				}
				p := mustVerify(t, v, tc.tok)
				if p.Sub != c["sub"] || p.Iss != tc.tn.Issuer() || p.Provider != tc.tn.Provider() || p.Issuer != tc.issuer {
					t.Errorf("principal sub=%q iss=%q provider=%q issuer=%q; want %v %q %q %q", p.Sub, p.Iss, p.Provider, p.Issuer, c["sub"], tc.tn.Issuer(), tc.tn.Provider(), tc.issuer)
				}
			})
		}
	})
	t.Run("claims are normalised", func(t *testing.T) { normalisationTable(t, v, a0, wo, st) })
}

// TestOnValidationReportsEveryOutcome: OnValidation gets (issuer name, "")
// for a valid token and (name or "", reason) for a refused one; the error
// text never holds the token. (The development issuer keeps it cheap.)
func TestOnValidationReportsEveryOutcome(t *testing.T) {
	t.Parallel()
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	dev := mustDevIssuer(t, keyPath, devIss, devAud)
	is, err := dev.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	is.Name = "dev-prod"
	rec := &recorder{}
	v := startVerifier(t, []Issuer{is}, Options{OnValidation: rec.onValidation})
	mint := func(d *DevIssuer, ttl time.Duration) string {
		tok, err := d.Mint(DevClaims{Sub: "alice", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := mint(dev, time.Hour)
	goodParts := strings.Split(good, ".")

	tests := []struct {
		name string
		tok  string
		want validation
	}{
		{"valid token reports the issuer name and no reason", good, validation{"dev-prod", ""}},
		{"expired token reports the issuer name", mint(dev, -time.Hour), validation{"dev-prod", ReasonExpired}},
		{"wrong audience reports the issuer name", mint(mustDevIssuer(t, keyPath, devIss, "https://x.example/mcp"), time.Hour), validation{"dev-prod", ReasonAudienceMismatch}},
		{"unknown key reports the issuer name", mint(mustDevIssuer(t, filepath.Join(t.TempDir(), "k.pem"), devIss, devAud), time.Hour), validation{"dev-prod", ReasonKeyUnknown}},
		{"unknown issuer reports no issuer name", mint(mustDevIssuer(t, keyPath, "https://attacker.example", devAud), time.Hour), validation{"", ReasonIssuerUnknown}},
		{"alg none reports no issuer name", b64url(`{"alg":"none"}`) + "." + goodParts[1] + ".", validation{"", ReasonAlgNotAllowed}},
		{"malformed token reports no issuer name", "abc.def", validation{"", ReasonMalformed}},
		{"oversized token reports no issuer name", strings.Repeat("x", MaxTokenBytes+1), validation{"", ReasonTooLarge}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.validationCount()
			_, err := verify(v, tc.tok)
			got := rec.validationsSince(before)
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("OnValidation calls = %v, want [%v]", got, tc.want)
			}
			if tc.want.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			e := refusal(t, err, tc.want.reason)
			if e.Issuer != tc.want.issuer {
				t.Errorf("Error.Issuer = %q, want %q", e.Issuer, tc.want.issuer)
			}
			assertNoTokenInError(t, err, tc.tok)
		})
	}
}

// TestVerifyConcurrentUse runs many verifications at once (for -race; the
// flood of TestUnknownKIDFloodIsRateLimited does the same with fetched keys).
func TestVerifyConcurrentUse(t *testing.T) {
	t.Parallel()
	dev := mustDevIssuer(t, filepath.Join(t.TempDir(), "key.pem"), devIss, devAud)
	is, err := dev.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	v := startVerifier(t, []Issuer{is}, Options{OnValidation: rec.onValidation})
	good, err := dev.Mint(DevClaims{Sub: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bad := flipSignature(good)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			tok, want := good, Reason("")
			if i%2 == 1 {
				tok, want = bad, ReasonSignatureInvalid
			}
			_, err := verify(v, tok)
			if got := reasonOrEmpty(err); got != want {
				errs <- fmt.Errorf("token %d: reason %q, want %q", i, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := rec.validationCount(); n != 40 {
		t.Errorf("OnValidation called %d times, want 40", n)
	}
}

func reasonOrEmpty(err error) Reason {
	if err == nil {
		return ""
	}
	return ReasonOf(err)
}

// TestNewVerifierRejectsBadIssuers: configuration mistakes fail NewVerifier.
func TestNewVerifierRejectsBadIssuers(t *testing.T) {
	t.Parallel()
	ok := Issuer{Name: "a", Provider: "oidc", Issuer: "https://a.example/", Audiences: []string{testAud}, JWKSURL: "https://a.example/jwks"}
	tests := []struct {
		name    string
		issuers []Issuer
		wantErr string
	}{
		{"the same issuer twice is refused", []Issuer{ok, ok}, "configured twice"},
		{"an issuer without audience is refused", []Issuer{{Name: "a", Provider: "oidc", Issuer: "https://a.example/"}}, "no audience"},
		{"a static JWKS that is not JSON is refused", []Issuer{{Name: "a", Provider: "oidc", Issuer: "https://a.example/", Audiences: []string{testAud}, StaticJWKS: json.RawMessage("not json")}}, "https://a.example/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.issuers, Options{Logger: quietLogger()})
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
	t.Run("no issuers at all is accepted and refuses every token as issuer_unknown", func(t *testing.T) {
		v := startVerifier(t, nil, Options{})
		if p := v.Pending(); len(p) != 0 {
			t.Errorf("Pending = %q", p)
		}
		tok := "eyJhbGciOiJSUzI1NiJ9." + b64url(`{"iss":"https://a.example/","exp":9999999999}`) + ".c2ln"
		_, err := verify(v, tok)
		refusal(t, err, ReasonIssuerUnknown)
	})
}

// TestPendingBeforeStartAndCloseWithoutStart: Pending names every issuer
// whose keys are fetched, until Start fetched them; Close is safe without
// Start and twice.
func TestPendingBeforeStartAndCloseWithoutStart(t *testing.T) {
	t.Parallel()
	static := Issuer{Name: "static", Provider: "oidc", Issuer: "https://s.example", Audiences: []string{testAud}, StaticJWKS: json.RawMessage(`{"keys":[]}`)}
	remote := []Issuer{
		{Name: "b-remote", Provider: "oidc", Issuer: "https://b.example", Audiences: []string{testAud}, JWKSURL: "https://b.example/jwks"},
		{Name: "a-remote", Provider: "oidc", Issuer: "https://a.example", Audiences: []string{testAud}, JWKSURL: "https://a.example/jwks"},
	}
	v, err := NewVerifier(append(remote, static), Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.Pending(), []string{"a-remote", "b-remote"}; !slices.Equal(got, want) {
		t.Errorf("Pending = %q, want %q (sorted, static issuer excluded)", got, want)
	}
	_, err = verify(v, "eyJhbGciOiJSUzI1NiJ9."+b64url(`{"iss":"https://a.example","exp":9999999999}`)+".c2ln")
	if e := refusal(t, err, ReasonKeysUnavailable); e.Issuer != "a-remote" {
		t.Errorf("Error.Issuer = %q, want a-remote", e.Issuer)
	}
	v.Close()
	v.Close()
}

// TestErrorAndReasonOf: the Error text and ReasonOf's fail-closed default.
func TestErrorAndReasonOf(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	tests := []struct {
		name       string
		err        error
		wantText   string
		wantReason Reason
	}{
		{"error with a cause names reason and cause", &Error{Reason: ReasonExpired, Err: cause}, "token_expired: boom", ReasonExpired},
		{"error without a cause is its reason", &Error{Reason: ReasonMissing}, "token_missing", ReasonMissing},
		{"wrapped error keeps its reason", fmt.Errorf("ctx: %w", &Error{Reason: ReasonAudienceMismatch}), "ctx: audience_mismatch", ReasonAudienceMismatch},
		{"foreign error is claims_invalid (fail closed)", cause, "boom", ReasonClaimsInvalid},
		{"nil error is claims_invalid (fail closed)", nil, "", ReasonClaimsInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil && tc.err.Error() != tc.wantText {
				t.Errorf("Error() = %q, want %q", tc.err.Error(), tc.wantText)
			}
			if got := ReasonOf(tc.err); got != tc.wantReason {
				t.Errorf("ReasonOf = %q, want %q", got, tc.wantReason)
			}
		})
	}
	e := &Error{Reason: ReasonKeyUnknown, Err: cause}
	if !errors.Is(e, cause) {
		t.Error("Error does not unwrap to its cause")
	}
}

// fakeClock is an adjustable Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// TestVerifiedTokenCache: a verified token is remembered until exp plus
// leeway; with CacheSize -1 every verification is afresh; refused tokens are
// never remembered; the least recently used entry goes first.
func TestVerifiedTokenCache(t *testing.T) {
	t.Parallel()
	tn := idptest.NewTenant(t, idptest.ProviderWorkOS)
	t0 := time.Now().Truncate(time.Second)
	clk := &fakeClock{}
	clk.set(t0)
	rec := &recorder{}
	is := tenantIssuer("workos", tn)
	cached := startVerifier(t, []Issuer{is}, Options{Now: clk.now, OnValidation: rec.onValidation})
	uncached := startVerifier(t, []Issuer{is}, Options{Now: clk.now, CacheSize: -1})
	tiny := startVerifier(t, []Issuer{is}, Options{Now: clk.now, CacheSize: 1})
	for _, v := range []*Verifier{cached, uncached, tiny} {
		waitReady(t, v, 5*time.Second)
	}
	aud := []string{testAud}
	tok := tn.Token(idptest.Claims{Audience: aud, IssuedAt: t0, TTL: time.Minute}) // exp t0+60s

	t.Run("a cache hit gives the same principal and still reports the validation", func(t *testing.T) {
		clk.set(t0)
		from := rec.validationCount()
		p1 := mustVerify(t, cached, tok)
		p2 := mustVerify(t, cached, tok)
		if p1 != p2 {
			t.Error("the second verification did not come from the cache")
		}
		if got, want := rec.validationsSince(from), []validation{{"workos", ""}, {"workos", ""}}; !reflect.DeepEqual(got, want) {
			t.Errorf("OnValidation calls = %v, want %v", got, want)
		}
	})
	t.Run("with CacheSize -1 every verification is afresh", func(t *testing.T) {
		clk.set(t0)
		p1 := mustVerify(t, uncached, tok)
		p2 := mustVerify(t, uncached, tok)
		if p1 == p2 {
			t.Error("CacheSize -1 still caches")
		}
		if !reflect.DeepEqual(p1, p2) {
			t.Errorf("two verifications of one token differ:\n%+v\n%+v", p1, p2)
		}
	})
	for _, v := range []struct {
		name string
		v    *Verifier
	}{{"cached", cached}, {"uncached", uncached}} {
		t.Run(v.name+": accepted until exp plus leeway, then refused as expired", func(t *testing.T) {
			clk.set(t0)
			mustVerify(t, v.v, tok)
			clk.set(t0.Add(time.Minute + 29*time.Second))
			mustVerify(t, v.v, tok)
			clk.set(t0.Add(time.Minute + 30*time.Second))
			_, err := verify(v.v, tok)
			refusal(t, err, ReasonExpired)
			clk.set(t0.Add(time.Hour))
			_, err = verify(v.v, tok)
			refusal(t, err, ReasonExpired)
			clk.set(t0)
			mustVerify(t, v.v, tok)
		})
	}
	t.Run("the cache is the only memory: purged, a token is verified afresh", func(t *testing.T) {
		conn := context.Background()
		clk.set(t0)
		p1, err := verifyIn(conn, cached, tok)
		if err != nil {
			t.Fatal(err)
		}
		if p2, _ := verifyIn(conn, cached, tok); p2 != p1 {
			t.Error("the second verification on the connection did not come from the cache")
		}
		cached.cache.Purge()
		if p3, err := verifyIn(conn, cached, tok); err != nil || p3 == p1 {
			t.Errorf("after the cache was purged, the token was still answered from memory (%v)", err)
		}
	})
	t.Run("refused tokens are never cached", func(t *testing.T) {
		clk.set(t0)
		bad := flipSignature(tok)
		for range 2 {
			_, err := verify(cached, bad)
			refusal(t, err, ReasonSignatureInvalid)
		}
		early := tn.Token(idptest.Claims{Audience: aud, NotBefore: t0.Add(time.Hour)})
		_, err := verify(cached, early)
		refusal(t, err, ReasonNotYetValid)
		clk.set(t0.Add(time.Hour))
		mustVerify(t, cached, early) // the refusal was not remembered
	})
	t.Run("the least recently used token is evicted", func(t *testing.T) {
		clk.set(t0)
		other := tn.Token(idptest.Claims{Audience: aud, IssuedAt: t0, TTL: time.Minute})
		a1 := mustVerify(t, tiny, tok)
		if a2 := mustVerify(t, tiny, tok); a2 != a1 {
			t.Fatal("CacheSize 1 does not cache")
		}
		mustVerify(t, tiny, other)
		if a3 := mustVerify(t, tiny, tok); a3 == a1 {
			t.Error("the evicted token came from the cache")
		}
	})
}
