package server

import (
	"net/http"
	"strings"

	"github.com/toolgate/toolgate/idp"
)

// principal is who the request comes from: the holder of its bearer token
// (RFC 6750 §2.1: in the Authorization header only), or the anonymous
// principal where the configuration allows one.
func (s *Server) principal(r *http.Request) (*idp.Principal, error) {
	// A token in the query string leaks into logs and histories: refuse it
	// even beside a good header (MCP authorization, "Token Requirements").
	if r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
		return nil, s.refuseToken(idp.ReasonInQuery)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		if s.cfg.Anonymous {
			return idp.Anonymous(), nil
		}
		return nil, s.refuseToken(idp.ReasonMissing)
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, s.refuseToken(idp.ReasonNotBearer)
	}
	return s.verifier.Verify(r.Context(), strings.TrimSpace(token))
}

// refuseToken is a request refused before any token reached the verifier,
// counted as the verifier counts its refusals (issuer unknown).
func (s *Server) refuseToken(reason idp.Reason) error {
	s.metrics.tokenValidated("", reason)
	return &idp.Error{Reason: reason}
}
