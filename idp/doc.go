// Package idp turns a raw OAuth access token into a Principal: it validates the
// token against its issuer's JWKS (RFC 6750 bearer, RFC 9068 profile, RFC 8725
// rules) and normalises the claims of the provider presets (auth0, workos,
// stytch, oidc) into one shape for the policies. A refused token carries a
// Reason code, the same in the 401, the log and the metrics.
package idp
