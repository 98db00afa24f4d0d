package idp

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// Principal is the caller's identity as handed to policies (input.principal).
// Missing fields are empty strings or empty slices, never nil, so that a
// policy sees the same shape for every provider (docs/policy-contract.md,
// "The principal").
type Principal struct {
	Sub         string         `json:"sub"`
	Iss         string         `json:"iss"`
	ClientID    string         `json:"client_id"`
	Provider    string         `json:"provider"`
	OrgID       string         `json:"org_id"`
	Scopes      []string       `json:"scopes"`
	Permissions []string       `json:"permissions"`
	Roles       []string       `json:"roles"`
	Claims      map[string]any `json:"claims"`

	// Issuer is the configured issuer's name (a label for logs and metrics).
	Issuer string `json:"-"`

	fingerprint string // see Fingerprint
	key         string // see Key; both set once by the verifier
}

// Fingerprint is a SHA-256 of everything a policy can see of the principal,
// claims included: two principals with the same fingerprint get the same
// decisions. A principal made by the verifier is not changed afterwards and
// carries its fingerprint; one built by hand has it computed on each call.
func (p *Principal) Fingerprint() string {
	if p.fingerprint != "" {
		return p.fingerprint
	}
	return fingerprint(p)
}

func fingerprint(p *Principal) string {
	// encoding/json sorts map keys, so the encoding is canonical.
	b, err := json.Marshal(p)
	if err != nil {
		// Claims come from JSON and always encode; fail safe with a value
		// that matches no other principal.
		b = []byte(fmt.Sprintf("%p", p))
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// Input is the principal as handed to policies (input.principal): the
// fields of its JSON encoding, with a nil list or claims given as empty ones,
// so that a principal built by hand has the shape of one the verifier made.
// The policy input's schema (policy/input.schema.json) declares the same
// fields.
func (p *Principal) Input() map[string]any {
	claims := p.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	return map[string]any{
		"sub":         p.Sub,
		"iss":         p.Iss,
		"client_id":   p.ClientID,
		"provider":    p.Provider,
		"org_id":      p.OrgID,
		"scopes":      nonNil(p.Scopes),
		"permissions": nonNil(p.Permissions),
		"roles":       nonNil(p.Roles),
		"claims":      claims,
	}
}

// nonNil is s, or an empty list for nil: JSON and policies get [] rather
// than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ProviderAnonymous is the provider of the principal that serves token-less
// requests when anonymous access is on.
const ProviderAnonymous = "anonymous"

// Anonymous returns the principal of a request without a token.
func Anonymous() *Principal {
	p := &Principal{
		Provider:    ProviderAnonymous,
		Scopes:      []string{},
		Permissions: []string{},
		Roles:       []string{},
		Claims:      map[string]any{},
		Issuer:      ProviderAnonymous,
	}
	p.fingerprint = fingerprint(p)
	return p
}

// Key identifies the principal across requests: issuer plus subject.
func (p *Principal) Key() string {
	if p.key != "" {
		return p.key
	}
	return p.Iss + "\x00" + p.Sub
}

type principalKey struct{}

// WithPrincipal returns a context that carries p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal carried by ctx, if any.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
