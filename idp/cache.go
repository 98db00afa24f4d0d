package idp

import (
	"context"
	"crypto/sha256"
	"sync/atomic"
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
