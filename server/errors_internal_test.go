package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
)

// writeError answers every token and gate code, and the step-up, as the
// outcome table says: status, body error, challenge and Retry-After; and a
// gate refusal is counted under its code.
func TestWriteErrorFollowsTheOutcomeTable(t *testing.T) {
	gate := map[outcome.Code]error{
		outcome.OriginNotAllowed: errOriginForbidden,
		outcome.RequestTooLarge:  &tooLarge{},
		outcome.BadRequest:       errBadRequest,
		outcome.InvalidMessage:   errUnreadableMessage,
		outcome.RequestTooDeep:   tooDeep(64),
		outcome.TooManySessions:  tooManySessions(3),
		outcome.SessionNotFound:  errSessionUnknown,
		outcome.InternalError:    errors.New("a fault"),
	}
	s := &Server{metrics: newMetrics(nil, nil, nil), log: slog.New(slog.DiscardHandler), metadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"}
	for _, o := range outcome.Table {
		var err error
		switch o.Kind {
		case outcome.Token:
			err = &idp.Error{Reason: idp.Reason(o.Code)}
		case outcome.Gate:
			if err = gate[o.Code]; err == nil {
				t.Errorf("%s: no refusal of the gate's answers with it", o.Code)
				continue
			}
		case outcome.Decision:
			if o.Code != outcome.InsufficientScope {
				continue // answered by MCP, not by writeError
			}
			err = &stepUp{scopes: []string{"images:write"}, decisionID: "d1"}
		}
		t.Run(string(o.Code), func(t *testing.T) {
			w := httptest.NewRecorder()
			s.writeError(w, err)
			if w.Code != o.Status {
				t.Errorf("status %d, the table says %d", w.Code, o.Status)
			}
			var body oauthError
			if json.Unmarshal(w.Body.Bytes(), &body); body.Error != o.OAuthError {
				t.Errorf("body error %q, the table says %q", body.Error, o.OAuthError)
			}
			challenge := w.Header().Get("WWW-Authenticate")
			if o.Status == http.StatusUnauthorized || o.Challenge != "" {
				hasError := strings.Contains(challenge, `error="`)
				if hasError != (o.Challenge != "") || !strings.Contains(challenge, `error="`+o.Challenge+`"`) && o.Challenge != "" {
					t.Errorf("challenge %q, the table says error %q", challenge, o.Challenge)
				}
				if !strings.Contains(challenge, "resource_metadata=") {
					t.Errorf("challenge %q without resource_metadata", challenge)
				}
			} else if challenge != "" {
				t.Errorf("a challenge on a %d: %q", w.Code, challenge)
			}
			if got, want := w.Header().Get("Retry-After"), o.RetryAfter; (want == 0) != (got == "") || want != 0 && got != strconv.Itoa(want) {
				t.Errorf("Retry-After %q, the table says %d", got, want)
			}
			if o.Kind == outcome.Gate {
				var m dto.Metric
				_ = s.metrics.refused.WithLabelValues(string(o.Code)).Write(&m)
				if n := m.GetCounter().GetValue(); n != 1 {
					t.Errorf("toolgate_requests_refused_total{reason=%q} = %v, want 1", o.Code, n)
				}
			}
		})
	}
}
