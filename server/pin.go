package server

import (
	"time"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
)

// withheld is the decision on a call of a tool that a pinned upstream
// withholds (its definition is not the lock file's; docs/configuration.md,
// "Pinning upstream tools"), or nil for any other tool. The gate decides
// it, not the policy, which never saw the new definition; dry-run does not
// apply, since it is no policy's denial. The client gets what it gets for
// a tool that does not exist: the tool is not listed, and calling it must
// not tell that it exists.
func (s *Server) withheld(p *idp.Principal, tool string, args []byte) *callDecision {
	v := s.catalog.Load()
	if _, served := v.server[tool]; served || v.withheld[tool] == "" {
		return nil
	}
	d := policy.Decision{ID: policy.NewID(), Reason: "the tool's definition is not the lock file's", Revision: s.policy.Revision()}
	return &callDecision{Decision: d, logged: d, principal: p, tool: tool, args: args,
		code: outcome.ToolChanged, result: resultDeny, at: time.Now()}
}

// serverOf is the server of a tool served or withheld, "" for none.
func (v *catalogView) serverOf(tool string) string {
	if s, ok := v.server[tool]; ok {
		return s
	}
	return v.withheld[tool]
}
