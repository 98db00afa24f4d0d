package idp

import (
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/toolgate/toolgate/config"
)

// Providers are the claim-normalisation presets an issuer may name.
var Providers = config.Providers

// Stytch puts organisation and session facts under namespaced claims.
const (
	stytchOrganization = "https://stytch.com/organization"
	stytchSession      = "https://stytch.com/session"
)

// Normalise maps the claims of a token of the given provider preset to its
// principal, as the verifier does once the token is valid; for explaining a
// decision from claims alone.
func Normalise(provider, issuer string, claims map[string]any) *Principal {
	return normalise(provider, issuer, jwt.MapClaims(claims))
}

// normalise maps a validated token's claims to the principal
// (docs/policy-contract.md, "The principal"). Every provider gets the generic claims
// (scope/scp, permissions, role/roles, org_id, client_id/azp); Stytch adds
// its namespaced organisation and session roles.
func normalise(provider, issuer string, c jwt.MapClaims) *Principal {
	p := &Principal{
		Sub:         str(c["sub"]),
		Iss:         str(c["iss"]),
		ClientID:    firstNonEmpty(str(c["client_id"]), str(c["azp"])),
		Provider:    provider,
		OrgID:       str(c["org_id"]),
		Scopes:      union(strings.Fields(str(c["scope"])), strs(c["scp"])),
		Permissions: union(strs(c["permissions"])),
		Roles:       union(strs(c["role"]), strs(c["roles"])),
		Claims:      map[string]any(c),
		Issuer:      issuer,
	}
	if provider == "stytch" {
		if org, ok := c[stytchOrganization].(map[string]any); ok && p.OrgID == "" {
			p.OrgID = str(org["organization_id"])
		}
		if s, ok := c[stytchSession].(map[string]any); ok {
			p.Roles = union(p.Roles, strs(s["roles"]))
		}
	}
	p.fingerprint, p.key = fingerprint(p), p.Iss+"\x00"+p.Sub
	return p
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// strs reads a claim that is a string or an array of strings; other values
// give nothing.
func strs(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// union returns the distinct strings of the lists, in first-seen order,
// never nil.
func union(lists ...[]string) []string {
	out := []string{}
	for _, l := range lists {
		for _, s := range l {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
