package idp

import (
	"crypto/sha256"
	"time"
)

// verified is a cached verification: the principal, until when the token
// stays valid (exp plus leeway, the same rule as a fresh check), and the
// issuer's key generation it was verified under.
type verified struct {
	p          *Principal
	until      time.Time
	issuer     *issuerState
	generation uint64
}

// fresh reports whether a remembered verification still holds: the token
// has not expired (to the second, leeway included: the rule of a fresh
// check) and no key left its issuer's JWKS since.
func (v *Verifier) fresh(c verified) bool {
	return v.opts.Now().Before(c.until) && c.generation == c.issuer.generation.Load()
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
