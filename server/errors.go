package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/toolgate/toolgate/idp"
)

// The denials the gate answers itself, before MCP sees the request.
var (
	errOriginForbidden = errors.New("origin_not_allowed")
	errSessionUnknown  = errors.New("session_not_found")
	errBadRequest      = errors.New("bad_request")
	errTooDeep         = errors.New("request_too_deep")
	// errUnreadableMessage is a body the gate cannot read as a JSON-RPC
	// message (params that are not an object, a name that is not a
	// string, a batch): MCP would refuse it too.
	errUnreadableMessage = errors.New("invalid_message")
)

// stepUp is a call denied for want of scopes (MCP authorization, "Scope
// challenge handling"; RFC 6750 §3.1 insufficient_scope).
type stepUp struct {
	scopes     []string
	decisionID string
}

func (s *stepUp) Error() string { return "insufficient_scope" }

// tooManySessions is a new session or stream refused because its owner
// holds limit of them already.
type tooManySessions struct{ limit int }

func (t tooManySessions) Error() string { return "too_many_sessions" }

// writeError is the one place that maps an error to an HTTP answer. Every
// refusal names a stable reason code; no refusal echoes the token.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var (
		tokenErr *idp.Error
		step     *stepUp
		tooMany  tooManySessions
		over     *tooLarge
	)
	switch {
	case errors.As(err, &tokenErr) && tokenErr.Reason == idp.ReasonKeysUnavailable:
		// The issuer's keys were never fetched: our fault, not the token's.
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, oauthError{"temporarily_unavailable", string(tokenErr.Reason), ""})
	case errors.As(err, &tokenErr):
		// RFC 6750 §3 and RFC 9728 §5.1: point the client at the metadata.
		// §3.1: no error code when the request lacks Bearer credentials,
		// whether it has no Authorization header or one of another scheme
		// ("attempted using an unsupported authentication method").
		params := [][2]string{{"resource_metadata", s.metadataURL}}
		if tokenErr.Reason != idp.ReasonMissing && tokenErr.Reason != idp.ReasonNotBearer {
			params = append([][2]string{{"error", "invalid_token"}, {"error_description", string(tokenErr.Reason)}}, params...)
		}
		w.Header().Set("WWW-Authenticate", bearerChallenge(params))
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_token", string(tokenErr.Reason), ""})
	case errors.As(err, &step):
		w.Header().Set("WWW-Authenticate", bearerChallenge([][2]string{
			{"error", "insufficient_scope"},
			{"scope", strings.Join(step.scopes, " ")},
			{"resource_metadata", s.metadataURL},
		}))
		writeJSON(w, http.StatusForbidden, oauthError{"insufficient_scope", "scope " + strings.Join(step.scopes, " ") + " required", step.decisionID})
	case errors.Is(err, errOriginForbidden):
		writeJSON(w, http.StatusForbidden, oauthError{"forbidden", "origin_not_allowed", ""})
	case errors.As(err, &over):
		refuseBody(w, over)
	case errors.Is(err, errBadRequest):
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "the request body could not be read", ""})
	case errors.Is(err, errUnreadableMessage):
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "the body is not a JSON-RPC request whose method and params can be read", ""})
	case errors.Is(err, errTooDeep):
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", fmt.Sprintf("JSON nested deeper than %d levels", s.cfg.Limits.MaxJSONDepth), ""})
	case errors.As(err, &tooMany):
		w.Header().Set("Retry-After", "60")
		writeJSON(w, http.StatusTooManyRequests, oauthError{"too_many_sessions",
			fmt.Sprintf("this principal has %d open sessions and streams, the limit; close one (DELETE /mcp) or wait for idle ones to expire", tooMany.limit), ""})
	case errors.Is(err, errSessionUnknown):
		// MCP transports: an unknown or foreign session id is 404, so the
		// client starts a new session; another principal's session is never
		// confirmed to exist.
		writeJSON(w, http.StatusNotFound, oauthError{"session_not_found", "session not found", ""})
	default:
		s.log.Error("request failed", "error", err)
		writeJSON(w, http.StatusInternalServerError, oauthError{"server_error", "internal error", ""})
	}
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
