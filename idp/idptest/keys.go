package idptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync/atomic"
	"time"
)

// signingKey is one key of a tenant: the private half signs, the public half
// is published in the JWKS under kid with alg.
type signingKey struct {
	kid  string
	alg  string
	priv crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey
}

// rsaPoolNext is the index of the next unused key of pooledRSAKeys.
var rsaPoolNext atomic.Int64

// newRSAKey returns an RSA-2048 key that no other tenant of this process
// holds: one of the pooled keys while they last, then a freshly generated one.
func newRSAKey() (*rsa.PrivateKey, error) {
	if i := rsaPoolNext.Add(1) - 1; i < int64(len(pooledRSAKeys)) {
		b, _ := pem.Decode([]byte(strings.ReplaceAll(pooledRSAKeys[i], "TESTING KEY", "PRIVATE KEY")))
		if b == nil {
			return nil, fmt.Errorf("pooled key %d: bad PEM", i)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pooled key %d: %w", i, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("pooled key %d: %T is not RSA", i, k)
		}
		return rk, nil
	}
	return rsa.GenerateKey(rand.Reader, 2048)
}

// newSigningKey makes a key for alg: RSA-2048 for RS256/384/512 and
// PS256/384/512, P-256 for ES256.
func newSigningKey(provider, alg string) (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = newRSAKey()
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("unsupported key algorithm %q (want RS256, RS384, RS512, PS256, PS384, PS512 or ES256)", alg)
	}
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: newKID(provider), alg: alg, priv: priv}, nil
}

// jwk is the public key as a JWK (RFC 7517) member of a JWKS.
func (k *signingKey) jwk() (map[string]any, error) {
	switch pub := k.priv.Public().(type) {
	case *rsa.PublicKey:
		return map[string]any{
			"kty": "RSA",
			"use": "sig",
			"alg": k.alg,
			"kid": k.kid,
			"n":   b64(pub.N.Bytes()),
			"e":   b64(big.NewInt(int64(pub.E)).Bytes()),
		}, nil
	case *ecdsa.PublicKey:
		pt, err := pub.Bytes() // 0x04 || X || Y, each 32 bytes for P-256
		if err != nil {
			return nil, err
		}
		if len(pt) != 65 {
			return nil, errors.New("unexpected P-256 point length")
		}
		return map[string]any{
			"kty": "EC",
			"use": "sig",
			"alg": k.alg,
			"kid": k.kid,
			"crv": "P-256",
			"x":   b64(pt[1:33]),
			"y":   b64(pt[33:65]),
		}, nil
	default:
		return nil, fmt.Errorf("unsupported public key %T", pub)
	}
}

// publicPEM is the PKIX ("PUBLIC KEY") PEM of the public key, with its
// trailing newline.
func (k *signingKey) publicPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// hexString is n random bytes in lower-case hex.
func hexString(n int) string { return hex.EncodeToString(randBytes(n)) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// newKID returns a key ID in the provider's style.
func newKID(provider string) string {
	switch provider {
	case ProviderWorkOS:
		return "sso_oidc_key_pair_" + newULID()
	case ProviderStytch:
		return "jwk-test-" + newUUID()
	default:
		return b64(randBytes(16))
	}
}

// newULID returns a ULID (26 Crockford base32 characters, time-prefixed), the
// shape of WorkOS object IDs after their prefix ("user_01JQ...").
func newULID() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(time.Now().UnixMilli())<<16)
	copy(raw[6:], randBytes(10))
	n := new(big.Int).SetBytes(raw[:])
	out := make([]byte, 26)
	mask := big.NewInt(31)
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[new(big.Int).And(n, mask).Int64()]
		n.Rsh(n, 5)
	}
	return string(out)
}

// newUUID returns a random (version 4) UUID, the shape of Stytch IDs after
// their prefix ("user-test-...").
func newUUID() string {
	b := randBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
