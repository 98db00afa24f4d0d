package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
)

// refusal is a request the gate answers itself, before MCP: its reason
// code (whose answer the outcome table gives) and the error_description the
// client reads.
type refusal struct {
	code        outcome.Code
	description string
}

func (r *refusal) Error() string { return string(r.code) }

// The refusals whose description is fixed.
var (
	errOriginForbidden = &refusal{outcome.OriginNotAllowed, "origin_not_allowed"}
	// MCP transports: an unknown or foreign session id is 404, so the
	// client starts a new session; another's session is never confirmed.
	errSessionUnknown = &refusal{outcome.SessionNotFound, "session not found"}
	errBadRequest     = &refusal{outcome.BadRequest, "the request body could not be read"}
	// errUnreadableMessage is a body the gate cannot read as a JSON-RPC
	// message (params that are not an object, a name that is not a
	// string, a batch): MCP would refuse it too.
	errUnreadableMessage = &refusal{outcome.InvalidMessage, "the body is not a JSON-RPC request whose method and params can be read"}
)

func tooDeep(limit int) error {
	return &refusal{outcome.RequestTooDeep, fmt.Sprintf("JSON nested deeper than %d levels", limit)}
}

func tooManySessions(limit int) error {
	return &refusal{outcome.TooManySessions, fmt.Sprintf("this principal has %d open sessions and streams, the limit; close one (DELETE /mcp) or wait for idle ones to expire", limit)}
}

// stepUp is a call denied for want of scopes (MCP authorization, "Scope
// challenge handling"; RFC 6750 §3.1 insufficient_scope).
type stepUp struct {
	scopes     []string
	decisionID string
}

func (s *stepUp) Error() string { return string(outcome.InsufficientScope) }

// writeError is the one place that maps an error to an HTTP answer, from
// the outcome table (docs/http.md): status, OAuth error, challenge and
// Retry-After by reason code. It counts and logs the gate's own refusals.
// No refusal echoes the token.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var (
		tokenErr *idp.Error
		step     *stepUp
		over     *tooLarge
		refused  *refusal
	)
	switch {
	case errors.As(err, &tokenErr):
		code := tokenErr.Reason
		o := outcome.Of(code)
		if o.Status == http.StatusUnauthorized {
			// RFC 6750 §3 and RFC 9728 §5.1: point the client at the
			// metadata; §3.1: no error code when the request lacks Bearer
			// credentials (o.Challenge is empty then).
			params := [][2]string{{"resource_metadata", s.metadataURL}}
			if o.Challenge != "" {
				params = append([][2]string{{"error", o.Challenge}, {"error_description", string(code)}}, params...)
			}
			w.Header().Set("WWW-Authenticate", bearerChallenge(params))
		}
		answer(w, o, oauthError{o.OAuthError, string(code), ""})
	case errors.As(err, &step):
		o := outcome.Of(outcome.InsufficientScope)
		w.Header().Set("WWW-Authenticate", bearerChallenge([][2]string{
			{"error", o.Challenge},
			{"scope", strings.Join(step.scopes, " ")},
			{"resource_metadata", s.metadataURL},
		}))
		answer(w, o, oauthError{o.OAuthError, "scope " + strings.Join(step.scopes, " ") + " required", step.decisionID})
	case errors.As(err, &over):
		s.refused(outcome.RequestTooLarge)
		refuseBody(w, over)
	case errors.As(err, &refused):
		o := s.refused(refused.code)
		answer(w, o, oauthError{o.OAuthError, refused.description, ""})
	default:
		o := s.refused(outcome.InternalError)
		s.log.Error("request failed", "error", err)
		answer(w, o, oauthError{o.OAuthError, "internal error", ""})
	}
}

// refused counts and logs one of the gate's own refusals.
func (s *Server) refused(code outcome.Code) outcome.Outcome {
	o := outcome.Of(code)
	s.metrics.refused.WithLabelValues(string(code)).Inc()
	s.log.Log(context.Background(), o.Level, "request refused", "reason", code)
	return o
}

// answer writes an outcome's status and JSON body, with its Retry-After.
func answer(w http.ResponseWriter, o outcome.Outcome, body oauthError) {
	if o.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(o.RetryAfter))
	}
	writeJSON(w, o.Status, body)
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	DecisionID  string `json:"decision_id,omitempty"`
}

// bearerChallenge writes a Bearer challenge (RFC 6750 §3) whose values are
// quoted strings with quotes, backslashes and control characters (C0 and
// C1) removed, so no value can break out of the header.
func bearerChallenge(params [][2]string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	for i, p := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		b.WriteString(p[0])
		b.WriteString(`="`)
		for _, r := range p[1] {
			if unicode.IsControl(r) || r == '"' || r == '\\' {
				continue
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	return b.String()
}

// writeJSON writes v with a Content-Length, so that an answer flushed
// before the handler ends (the 413 before its drain) is whole as sent.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
