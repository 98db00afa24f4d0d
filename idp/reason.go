package idp

import (
	"errors"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// Reason is a stable snake_case code for why a token was refused. The same
// code is the 401 body's reason, the log field and the metric label.
type Reason string

// The reasons a token is refused.
const (
	ReasonMissing          Reason = "token_missing"
	ReasonNotBearer        Reason = "not_bearer"
	ReasonInQuery          Reason = "token_in_query"
	ReasonTooLarge         Reason = "token_too_large"
	ReasonMalformed        Reason = "token_malformed"
	ReasonAlgNotAllowed    Reason = "alg_not_allowed"
	ReasonIssuerUnknown    Reason = "issuer_unknown"
	ReasonKeyUnknown       Reason = "key_unknown"
	ReasonSignatureInvalid Reason = "signature_invalid"
	ReasonExpired          Reason = "token_expired"
	ReasonExpMissing       Reason = "exp_missing"
	ReasonNotYetValid      Reason = "token_not_yet_valid"
	ReasonIssuedInFuture   Reason = "token_issued_in_future"
	ReasonAudienceMissing  Reason = "audience_missing"
	ReasonAudienceMismatch Reason = "audience_mismatch"
	ReasonSubjectMissing   Reason = "subject_missing"
	ReasonClaimsInvalid    Reason = "claims_invalid"
	// ReasonKeysUnavailable is the server's fault, not the token's: the
	// issuer's keys have never been fetched.
	ReasonKeysUnavailable Reason = "jwks_unavailable"
)

// Error is a refused token: the reason code, the configured issuer it was
// checked against (empty when none matched), and the underlying cause. Its
// text never contains the token.
type Error struct {
	Reason Reason
	Issuer string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Reason) + ": " + e.Err.Error()
	}
	return string(e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason code of err, or claims_invalid for an error
// that carries none (fail closed).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonClaimsInvalid
}

func refuse(r Reason, issuer string, err error) *Error {
	return &Error{Reason: r, Issuer: issuer, Err: err}
}

// classify maps golang-jwt's errors to reason codes.
func classify(tok *jwt.Token, err error, issuer string) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if tok != nil && tok.Header != nil {
		if alg, _ := tok.Header["alg"].(string); !slices.Contains(Algorithms, alg) {
			return refuse(ReasonAlgNotAllowed, issuer, err)
		}
	}
	r := ReasonClaimsInvalid
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		r = ReasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		r = ReasonSignatureInvalid
	case errors.Is(err, jwt.ErrTokenExpired):
		r = ReasonExpired
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		r = ReasonExpMissing
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		r = ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		r = ReasonIssuedInFuture
	}
	return refuse(r, issuer, err)
}
