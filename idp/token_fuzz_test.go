package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/toolgate/toolgate/outcome"
)

// Fuzz targets of the token path: `make fuzz` runs each for a few seconds
// in CI; the seeds here and under testdata/fuzz/ run with every `go test`.

const (
	fuzzIss = "http://127.0.0.1:8080/dev"
	fuzzAud = "http://127.0.0.1:8080/mcp"
)

// fuzzSetup is the expensive part of a fuzz target, made once per target:
// a development issuer with a fresh key in a temporary directory and a
// verifier that trusts it through its static JWKS (nothing is fetched).
type fuzzSetup struct {
	dev     *DevIssuer
	v       *Verifier
	reasons map[Reason]bool
}

func newFuzzSetup(f *testing.F) *fuzzSetup {
	f.Helper()
	keyPath := filepath.Join(f.TempDir(), "key.pem")
	writeFuzzKey(f, keyPath)
	dev, err := LoadDevIssuer(keyPath, fuzzIss, fuzzAud)
	if err != nil {
		f.Fatal(err)
	}
	is, err := dev.Issuer()
	if err != nil {
		f.Fatal(err)
	}
	// The cache is off: every input goes through the whole check.
	v, err := NewVerifier([]Issuer{is}, Options{CacheSize: -1, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	return &fuzzSetup{dev: dev, v: v, reasons: declaredReasons(f)}
}

// writeFuzzKey writes the development key of the fuzz targets: a fixed
// P-256 key (its scalar is a SHA-256 of a constant), so that the seed files
// under testdata/fuzz/FuzzVerify can carry tokens with real signatures
// (expiring in 2100) that reach the claim checks.
func writeFuzzKey(f *testing.F, path string) {
	f.Helper()
	scalar := sha256.Sum256([]byte("toolgate fuzz key"))
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar[:])
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC " + "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		f.Fatal(err)
	}
}

// declaredReasons are the token codes of the outcome table, so that a
// reason returned without a row there (and so without an answer) is caught.
func declaredReasons(f *testing.F) map[Reason]bool {
	f.Helper()
	out := map[Reason]bool{}
	for _, c := range outcome.Codes(outcome.Token) {
		out[c] = true
	}
	if len(out) < 10 {
		f.Fatalf("the outcome table has only %d token codes", len(out))
	}
	return out
}

// jsonRoundTrip is what a string becomes after encoding/json: invalid UTF-8
// turns into U+FFFD.
func jsonRoundTrip(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// checkRefusal: a refused token is an *Error with a declared reason, no
// principal, and an error text that does not echo the input.
func (s *fuzzSetup) checkRefusal(t *testing.T, raw string, p *Principal, err error) {
	t.Helper()
	if p != nil {
		t.Errorf("a refused token returned a principal too: %+v", p)
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error is %T (%v), want *idp.Error", err, err)
	}
	if !s.reasons[e.Reason] {
		t.Errorf("reason %q is not declared in reason.go", e.Reason)
	}
	if e.Issuer != "" && e.Issuer != "dev" {
		t.Errorf("Error.Issuer = %q, want the configured name or nothing", e.Issuer)
	}
	if len(raw) > 16 && strings.Contains(e.Error(), raw) {
		t.Errorf("the error text contains the token: %q", e.Error())
	}
}

// checkPrincipalShape: the lists are never nil, have no empty strings and no
// duplicates; the principal encodes; its fingerprint is a SHA-256.
func checkPrincipalShape(t *testing.T, p *Principal) {
	t.Helper()
	for name, l := range map[string][]string{"scopes": p.Scopes, "permissions": p.Permissions, "roles": p.Roles} {
		if l == nil {
			t.Errorf("%s is nil", name)
		}
		seen := map[string]bool{}
		for _, s := range l {
			if s == "" {
				t.Errorf("%s has an empty string: %q", name, l)
			}
			if seen[s] {
				t.Errorf("%s has %q twice: %q", name, s, l)
			}
			seen[s] = true
		}
	}
	if _, err := json.Marshal(p); err != nil {
		t.Errorf("json.Marshal(principal): %v", err)
	}
	if n := len(p.Fingerprint()); n != 32 {
		t.Errorf("fingerprint has %d bytes, want 32", n)
	}
}

// FuzzVerify: arbitrary strings as access tokens never panic, are refused
// with a declared reason and an error that does not echo them; the same
// string as the claims of a token the development issuer mints verifies
// and comes back unchanged.
func FuzzVerify(f *testing.F) {
	s := newFuzzSetup(f)
	ctx := context.Background()

	good, err := s.dev.Mint(DevClaims{Sub: "alice", Permissions: []string{"image_generation"}, Scope: "images:write", TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	expired, _ := s.dev.Mint(DevClaims{Sub: "alice", TTL: -time.Hour})
	for _, seed := range []string{
		"", "a.b.c", "..", good, expired,
		good[:strings.LastIndexByte(good, '.')+1], // no signature
		good[:len(good)-4] + "AAAA",               // bad signature
		strings.Replace(good, ".", "=.", 1),       // padded base64
		"Bearer " + good,                          // the header, not the token
		"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",    // alg none
		"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgwODAvZGV2In0.c2ln", // HS256, our issuer
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, raw string) {
		p, err := s.v.Verify(ctx, raw)
		if err != nil {
			s.checkRefusal(t, raw, p, err)
		} else {
			// Only a token of the development issuer can pass.
			if p == nil || p.Iss != fuzzIss || p.Sub == "" || p.Provider != "oidc" || p.Issuer != "dev" {
				t.Fatalf("accepted %q as %+v", raw, p)
			}
			checkPrincipalShape(t, p)
		}

		// The input as the claims of a minted token: it verifies, and the
		// principal carries the values (as JSON carries them).
		sub := raw
		if sub == "" {
			sub = "fuzz"
		}
		tok, err := s.dev.Mint(DevClaims{Sub: sub, Permissions: []string{raw}, Scope: raw, Roles: []string{raw}, TTL: time.Hour})
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		p, err = s.v.Verify(ctx, tok)
		if len(tok) > MaxTokenBytes {
			if ReasonOf(err) != ReasonTooLarge {
				t.Fatalf("a %d-byte token: %v, want %s", len(tok), err, ReasonTooLarge)
			}
			return
		}
		if err != nil {
			t.Fatalf("a minted token is refused: %v", err)
		}
		checkPrincipalShape(t, p)
		norm := jsonRoundTrip(raw)
		if want := jsonRoundTrip(sub); p.Sub != want {
			t.Errorf("sub = %q, want %q", p.Sub, want)
		}
		list := []string{}
		if norm != "" {
			list = []string{norm}
		}
		if !slices.Equal(p.Permissions, list) || !slices.Equal(p.Roles, list) {
			t.Errorf("permissions = %q, roles = %q, want %q", p.Permissions, p.Roles, list)
		}
		if want := union(strings.Fields(norm)); !slices.Equal(p.Scopes, want) {
			t.Errorf("scopes = %q, want %q", p.Scopes, want)
		}
	})
}

// FuzzNormalise: any JSON object as a token's claims, through every
// provider preset: never panics; the lists are never nil, without empty
// strings or duplicates; the principal encodes; the fingerprint is 32 bytes
// and the same for the same claims. Signed by the development issuer (with
// its iss, aud, exp and a sub), the claims verify to the same principal.
func FuzzNormalise(f *testing.F) {
	s := newFuzzSetup(f)
	ctx := context.Background()
	for _, seed := range []string{
		`{}`,
		`{"sub":"a","scope":"read write read","scp":["write","", "admin"],"permissions":["p","p",""]}`,
		`{"azp":"client","client_id":"","org_id":"o","role":"r","roles":["r","s",1,null]}`,
		`{"https://stytch.com/organization":{"organization_id":"org"},"https://stytch.com/session":{"roles":["a","a"]},"roles":"b"}`,
		`{"scope":"  \t\n ","scp":"x","permissions":{"a":1},"roles":[[]],"sub":7}`,
		`{"sub":"\ud800","scope":"\u00e9 \u2028 \u00a0x","iss":"","exp":1e300,"nested":{"a":[1.5,-0,true,null]}}`,
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var claims jwt.MapClaims
		if err := json.Unmarshal(data, &claims); err != nil || claims == nil {
			t.Skip("not a JSON object")
		}
		fresh := func() jwt.MapClaims {
			var c jwt.MapClaims
			if err := json.Unmarshal(data, &c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		for _, provider := range Providers {
			p := normalise(provider, "name", claims)
			checkPrincipalShape(t, p)
			if p.Provider != provider || p.Issuer != "name" {
				t.Errorf("provider = %q, issuer = %q", p.Provider, p.Issuer)
			}
			again := normalise(provider, "name", fresh())
			if p.Fingerprint() != again.Fingerprint() {
				t.Errorf("%s: the fingerprint differs for the same claims", provider)
			}
			// A principal built by hand (no stored fingerprint) computes
			// the same one.
			byHand := *again
			byHand.fingerprint = ""
			if byHand.Fingerprint() != p.Fingerprint() {
				t.Errorf("%s: a hand-made copy has another fingerprint", provider)
			}
		}

		// The same claims in a token of the development issuer.
		c := fresh()
		now := time.Now()
		c["iss"], c["aud"], c["exp"], c["iat"] = fuzzIss, fuzzAud, now.Add(time.Hour).Unix(), now.Unix()
		delete(c, "nbf")
		if sub, _ := c["sub"].(string); sub == "" {
			c["sub"] = "fuzz"
		}
		tk := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tk.Header["kid"] = s.dev.kid
		tok, err := tk.SignedString(s.dev.key)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		p, err := s.v.Verify(ctx, tok)
		if len(tok) > MaxTokenBytes {
			if ReasonOf(err) != ReasonTooLarge {
				t.Fatalf("a %d-byte token: %v, want %s", len(tok), err, ReasonTooLarge)
			}
			return
		}
		if err != nil {
			t.Fatalf("a token with these claims is refused: %v", err)
		}
		checkPrincipalShape(t, p)
		// What the verifier saw is the JSON of c.
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var seen jwt.MapClaims
		if err := json.Unmarshal(b, &seen); err != nil {
			t.Fatal(err)
		}
		if want := normalise("oidc", "dev", seen); p.Fingerprint() != want.Fingerprint() {
			pj, _ := json.Marshal(p)
			wj, _ := json.Marshal(want)
			t.Errorf("verified principal\n %s\nwant\n %s", pj, wj)
		}
	})
}
