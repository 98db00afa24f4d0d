// Package idp turns a raw OAuth access token into a Principal: it validates the
// token against its issuer's JWKS and normalises the claims of the provider
// presets (auth0, workos, stytch, oidc) into one shape for the policies.
package idp

import "context"

// Principal is the caller's identity as handed to policies (input.principal).
// Missing fields are empty strings or empty slices, never nil, so that a
// policy sees the same shape for every provider (CONTRACT.md, "Identity
// handed to policies").
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
}

// ProviderAnonymous is the provider of the principal that serves token-less
// requests when anonymous access is on.
const ProviderAnonymous = "anonymous"

// Anonymous returns the principal of a request without a token.
func Anonymous() *Principal {
	return &Principal{
		Provider:    ProviderAnonymous,
		Scopes:      []string{},
		Permissions: []string{},
		Roles:       []string{},
		Claims:      map[string]any{},
		Issuer:      ProviderAnonymous,
	}
}

// Key identifies the principal across requests: issuer plus subject.
func (p *Principal) Key() string { return p.Iss + "\x00" + p.Sub }

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
