package idp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"
)

const (
	devIss = "http://127.0.0.1:8080/dev"
	devAud = "http://127.0.0.1:8080/mcp"
)

// TestLoadDevIssuerCreatesThenReusesTheKey: the first load writes the key
// file (0600, directory 0700), the next one reads the same key.
func TestLoadDevIssuerCreatesThenReusesTheKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "config", "toolgate")
	path := filepath.Join(dir, "dev-signing-key.pem")

	first, err := LoadDevIssuer(path, devIss, devAud)
	if err != nil {
		t.Fatalf("first LoadDevIssuer: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %o, want 600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("key directory mode %o is open to others", perm)
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	second, err := LoadDevIssuer(path, devIss, devAud)
	if err != nil {
		t.Fatalf("second LoadDevIssuer: %v", err)
	}
	if first.kid != second.kid || !first.key.Equal(second.key) {
		t.Errorf("second load has kid %s, first %s (or another key)", second.kid, first.kid)
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(pemBytes) {
		t.Error("the second load rewrote the key file")
	}
	j1, err := first.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := second.JWKS()
	if string(j1) != string(j2) {
		t.Errorf("JWKS differ:\n%s\n%s", j1, j2)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(j1, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if k["kid"] != first.kid || k["alg"] != "ES256" || k["kty"] != "EC" || k["use"] != "sig" {
		t.Errorf("JWK = %v", k)
	}
	if _, private := k["d"]; private {
		t.Error("the JWKS publishes the private key")
	}

	other, err := LoadDevIssuer(filepath.Join(t.TempDir(), "k.pem"), devIss, devAud)
	if err != nil {
		t.Fatal(err)
	}
	if other.kid == first.kid {
		t.Error("two key files gave the same kid")
	}
}

// TestLoadDevIssuerRefusesABadKeyFile: a file that is not an EC key PEM is
// an error, never silently replaced.
func TestLoadDevIssuerRefusesABadKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, content string }{
		{"not PEM", "hello\n"},
		{"PEM that is not an EC key", "-----BEGIN EC PRIVATE KEY-----\naGVsbG8=\n-----END EC PRIVATE KEY-----\n"},
		{"empty file", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadDevIssuer(path, devIss, devAud); err == nil {
				t.Fatal("LoadDevIssuer accepted the file")
			}
			b, _ := os.ReadFile(path)
			if string(b) != tc.content {
				t.Error("the bad key file was overwritten")
			}
		})
	}
}

// TestDevIssuerMintIsAcceptedByTheVerifier: a minted token passes a verifier
// configured with Issuer() (static JWKS, nothing fetched) and carries the
// claims given.
func TestDevIssuerMintIsAcceptedByTheVerifier(t *testing.T) {
	t.Parallel()
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	dev, err := LoadDevIssuer(keyPath, devIss, devAud)
	if err != nil {
		t.Fatal(err)
	}
	is, err := dev.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	if is.Issuer != devIss || !slices.Equal(is.Audiences, []string{devAud}) || is.StaticJWKS == nil || is.JWKSURL != "" || is.Name != "dev" {
		t.Errorf("Issuer() = %+v", is)
	}
	rt := &recordingTransport{}
	rec := &recorder{}
	v := startVerifier(t, []Issuer{is}, Options{Transport: rt, OnValidation: rec.onValidation})
	if p := v.Pending(); len(p) != 0 {
		t.Errorf("a static issuer is pending: %q", p)
	}

	tests := []struct {
		name string
		c    DevClaims
		want wantPrincipal
	}{
		{
			name: "permissions, scope and roles",
			c:    DevClaims{Sub: "alice", Permissions: []string{"tools:add", "tools:whoami"}, Scope: "tools:read tools:call", Roles: []string{"admin"}, TTL: time.Hour},
			want: wantPrincipal{ClientID: "toolgate-dev", Scopes: []string{"tools:read", "tools:call"}, Permissions: []string{"tools:add", "tools:whoami"}, Roles: []string{"admin"}},
		},
		{
			name: "no permissions, scope or roles",
			c:    DevClaims{Sub: "bob", TTL: time.Minute},
			want: wantPrincipal{ClientID: "toolgate-dev", Scopes: []string{}, Permissions: []string{}, Roles: []string{}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := dev.Mint(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			h, payload := segments(t, tok)
			if h["alg"] != "ES256" || h["kid"] != dev.kid || h["typ"] != "at+jwt" {
				t.Errorf("header = %v", h)
			}
			p := mustVerify(t, v, tok)
			if p.Sub != tc.c.Sub || p.Iss != devIss || p.Provider != "oidc" || p.Issuer != "dev" {
				t.Errorf("sub=%q iss=%q provider=%q issuer=%q", p.Sub, p.Iss, p.Provider, p.Issuer)
			}
			checkPrincipal(t, p, tc.want)
			if !reflect.DeepEqual(p.Claims, payload) {
				t.Errorf("claims = %v, want %v", p.Claims, payload)
			}
			if exp, iat := payload["exp"].(float64), payload["iat"].(float64); time.Duration(exp-iat)*time.Second != tc.c.TTL {
				t.Errorf("exp - iat = %vs, want %s", exp-iat, tc.c.TTL)
			}
		})
	}

	t.Run("an expired token is refused", func(t *testing.T) {
		tok, err := dev.Mint(DevClaims{Sub: "carol", TTL: -time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		_, err = verify(v, tok)
		if e := refusal(t, err, ReasonExpired); e.Issuer != "dev" {
			t.Errorf("Error.Issuer = %q", e.Issuer)
		}
	})
	t.Run("a token of another development key is refused", func(t *testing.T) {
		stranger, err := LoadDevIssuer(filepath.Join(t.TempDir(), "other.pem"), devIss, devAud)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := stranger.Mint(DevClaims{Sub: "mallory", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		_, err = verify(v, tok)
		refusal(t, err, ReasonKeyUnknown)
	})
	t.Run("a token for another audience is refused", func(t *testing.T) {
		// The same key file, another server: only the audience differs.
		elsewhere, err := LoadDevIssuer(keyPath, devIss, "http://127.0.0.1:9999/mcp")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := elsewhere.Mint(DevClaims{Sub: "dave", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		_, err = verify(v, tok)
		refusal(t, err, ReasonAudienceMismatch)
	})
	if u := rt.fetched(); len(u) != 0 {
		t.Errorf("the static issuer fetched %q", u)
	}
}

// TestDevKeyPath: $TOOLGATE_DEV_KEY wins, else the user's config directory.
func TestDevKeyPath(t *testing.T) {
	t.Setenv("TOOLGATE_DEV_KEY", "/tmp/some/key.pem")
	if p, err := DevKeyPath(); err != nil || p != "/tmp/some/key.pem" {
		t.Errorf("DevKeyPath = %q, %v", p, err)
	}
	t.Setenv("TOOLGATE_DEV_KEY", "")
	t.Setenv("XDG_CONFIG_HOME", "/tmp/xdg")
	t.Setenv("HOME", "/tmp/home")
	p, err := DevKeyPath()
	if err != nil || filepath.Base(p) != "dev-signing-key.pem" || filepath.Base(filepath.Dir(p)) != "toolgate" {
		t.Errorf("DevKeyPath = %q, %v; want <config dir>/toolgate/dev-signing-key.pem", p, err)
	}
	if want := "/tmp/xdg/toolgate/dev-signing-key.pem"; runtime.GOOS == "linux" && p != want {
		t.Errorf("DevKeyPath = %q, want %q", p, want)
	}
}

func mustDevIssuer(t *testing.T, keyPath, issuer, audience string) *DevIssuer {
	t.Helper()
	d, err := LoadDevIssuer(keyPath, issuer, audience)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
