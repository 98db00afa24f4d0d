package idp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// DevIssuer is the development authorization server of `toolgate serve`
// without a config: an ES256 key kept in a file of the user's, so that
// `toolgate token` mints what the server accepts. Development only.
type DevIssuer struct {
	issuer, audience string
	key              *ecdsa.PrivateKey
	kid              string
}

// DevKeyPath is where the development signing key lives:
// $TOOLGATE_DEV_KEY, else toolgate/dev-signing-key.pem in the user's config
// directory, else (no $HOME: a container or service started with an empty
// environment) dev-signing-key.pem in a directory of the user's own under
// the temporary directory, so that `toolgate token` run the same way finds
// the server's key.
func DevKeyPath() (string, error) {
	if p := os.Getenv("TOOLGATE_DEV_KEY"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err == nil {
		return filepath.Join(dir, "toolgate", "dev-signing-key.pem"), nil
	}
	if dir, err = privateTempDir(err); err != nil {
		return "", err
	}
	return filepath.Join(dir, "dev-signing-key.pem"), nil
}

// LoadDevIssuer reads the key at keyPath, creating it (mode 0600) when it
// does not exist yet.
func LoadDevIssuer(keyPath, issuer, audience string) (*DevIssuer, error) {
	key, err := readDevKey(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		key, err = writeDevKey(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("development signing key %s: %w", keyPath, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pub)
	return &DevIssuer{issuer: issuer, audience: audience, key: key, kid: "dev-" + base64.RawURLEncoding.EncodeToString(sum[:9])}, nil
}

func readDevKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not a PEM file")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

func writeDevKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Write a temporary file, then link it into place: another process
	// never reads a half-written key, and the first one to link wins.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dev-key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		return readDevKey(path)
	} else if err != nil {
		return nil, err
	}
	return key, nil
}

// JWKS is the issuer's public key set.
func (d *DevIssuer) JWKS() (json.RawMessage, error) {
	jwk, err := jwkset.NewJWKFromKey(&d.key.PublicKey, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: d.kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig},
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
}

// Issuer is the verifier's view of the development issuer.
func (d *DevIssuer) Issuer() (Issuer, error) {
	jwks, err := d.JWKS()
	return Issuer{Name: "dev", Provider: "oidc", Issuer: d.issuer, Audiences: []string{d.audience}, StaticJWKS: jwks}, err
}

// DevClaims are what a development token says of its holder.
type DevClaims struct {
	Sub         string
	Permissions []string
	Scope       string
	Roles       []string
	TTL         time.Duration
}

// Mint signs a development access token.
func (d *DevIssuer) Mint(c DevClaims) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":         d.issuer,
		"aud":         d.audience,
		"sub":         c.Sub,
		"iat":         now.Unix(),
		"exp":         now.Add(c.TTL).Unix(),
		"client_id":   "toolgate-dev",
		"permissions": nonNil(c.Permissions),
		"roles":       nonNil(c.Roles),
		"scope":       c.Scope,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = d.kid
	t.Header["typ"] = "at+jwt"
	return t.SignedString(d.key)
}
