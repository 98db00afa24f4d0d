package idp

import (
	"errors"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/toolgate/toolgate/outcome"
)

// Reason is why a token was refused: a code of the outcome table, whose
// row says what the client is answered (401, or 503 for
// ReasonKeysUnavailable), the metric label and the log level
// (docs/http.md, "Reason codes").
type Reason = outcome.Code

// The reasons a token is refused.
const (
	ReasonMissing          = outcome.TokenMissing
	ReasonNotBearer        = outcome.NotBearer
	ReasonInQuery          = outcome.TokenInQuery
	ReasonTooLarge         = outcome.TokenTooLarge
	ReasonMalformed        = outcome.TokenMalformed
	ReasonAlgNotAllowed    = outcome.AlgNotAllowed
	ReasonIssuerUnknown    = outcome.IssuerUnknown
	ReasonKeyUnknown       = outcome.KeyUnknown
	ReasonSignatureInvalid = outcome.SignatureInvalid
	ReasonExpired          = outcome.TokenExpired
	ReasonExpMissing       = outcome.ExpMissing
	ReasonNotYetValid      = outcome.TokenNotYetValid
	ReasonIssuedInFuture   = outcome.TokenIssuedInFuture
	ReasonAudienceMissing  = outcome.AudienceMissing
	ReasonAudienceMismatch = outcome.AudienceMismatch
	ReasonSubjectMissing   = outcome.SubjectMissing
	ReasonClaimsInvalid    = outcome.ClaimsInvalid
	// ReasonKeysUnavailable is the server's fault, not the token's: the
	// issuer's keys have never been fetched.
	ReasonKeysUnavailable = outcome.JWKSUnavailable
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
