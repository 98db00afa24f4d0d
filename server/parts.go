package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/upstream"
)

// The server is built from parts it takes as these small interfaces, so
// that it can run on stubs; internal/wire builds the real ones (an
// *idp.Verifier, a *policy.Engine) from the configuration.

// Authenticator says who holds a bearer token (RFC 6750 §2.1; the gate has
// taken it from the Authorization header). *idp.Verifier is one.
type Authenticator interface {
	// Verify returns the token's principal, or an error that idp.ReasonOf
	// reads (an *idp.Error): the gate answers it with a 401.
	Verify(ctx context.Context, token string) (*idp.Principal, error)
	// Status reports the keys of every issuer trusted, sorted by name:
	// /readyz shows it, and is 503 while an issuer's keys were never
	// loaded. The names are the issuer labels of the metrics.
	Status() []idp.IssuerStatus
}

// Decider is the policy in force (docs/policy-contract.md, "Rules the gate reads").
// *policy.Engine is one.
type Decider interface {
	// DecideRaw decides a call of tool with its arguments as sent (JSON).
	DecideRaw(ctx context.Context, p *idp.Principal, tool string, args []byte) policy.Decision
	// Visible names the tools p may see.
	Visible(ctx context.Context, p *idp.Principal) (map[string]bool, error)
	// Revision, LoadedAt and LastError describe the policy in force and the
	// last failed reload, for /readyz and the decision log.
	Revision() string
	LoadedAt() time.Time
	LastError() error
}

// CatalogSetter is a Decider whose catalog can change while it serves
// (*policy.Engine is one): the gateway's upstream tools come and go.
type CatalogSetter interface {
	SetCatalog(catalog []policy.Tool) error
}

// Upstreams are the MCP servers behind the gate (issue 15); an
// *upstream.Pool is one. The server serves their tools beside its own,
// filtered and enforced the same way, and names them in /readyz.
type Upstreams interface {
	// Tools are the tools of the upstreams that are up, named as the
	// client sees them, each with a handler that forwards the call.
	Tools() []upstream.Tool
	// Status reports each upstream's state.
	Status() []upstream.Status
}

// Withholder is Upstreams that withhold tools (an *upstream.Pool is one):
// a pinned upstream's tools that are not the lock's. Withheld maps each,
// named as the client would see it, to its upstream.
type Withholder interface {
	Withheld() map[string]string
}

// A Task keeps a part current while the server serves: the issuers' key
// refresh, the policy directory's watch, the bundle poll. Serve starts each
// task, in order, before it answers, with a context that ends when serving
// ends; start returns a function that waits for the task's end, or an error,
// and then Serve does not serve.
type Task func(ctx context.Context) (wait func(), err error)

// Events carries what the verifier and the policy engine report to the
// server, which is built after them: the wiring makes one first, gives its
// methods to idp.Options (OnValidation, OnJWKSRefresh) and policy.Options
// (OnSwap, OnReload), and passes it to New (Options.Events), which binds
// it to the server's metrics and sessions. Reports made before are dropped;
// there are none, since the parts report only from their Tasks, which Serve
// starts (New reads the first policy's revision from the Decider). An Events
// serves one Server.
type Events struct{ srv atomic.Pointer[Server] }

// TokenValidated counts a token validation (idp.Options.OnValidation).
func (e *Events) TokenValidated(issuer string, reason idp.Reason) {
	if s := e.srv.Load(); s != nil {
		s.metrics.tokenValidated(issuer, reason)
	}
}

// JWKSRefreshed counts a JWKS fetch (idp.Options.OnJWKSRefresh).
func (e *Events) JWKSRefreshed(issuer string, err error, keys int) {
	if s := e.srv.Load(); s != nil {
		s.metrics.jwksRefreshed(issuer, err, keys)
	}
}

// PolicySwapped publishes a new policy revision and tells connected
// sessions that their tool list may have changed (policy.Options.OnSwap).
func (e *Events) PolicySwapped(revision string) {
	if s := e.srv.Load(); s != nil {
		s.policyChanged(revision)
	}
}

// UpstreamsChanged puts the upstreams' tools as they are now in the policy
// catalog and the tool list, and tells the sessions
// (upstream.Options.OnChange).
func (e *Events) UpstreamsChanged() {
	if s := e.srv.Load(); s != nil {
		s.upstreamsChanged()
	}
}

// UpstreamResourceUpdated passes an upstream's
// notifications/resources/updated to the client sessions subscribed that
// may read the resource (upstream.Options.OnResourceUpdated).
func (e *Events) UpstreamResourceUpdated(name, principal string, params map[string]any) {
	if s := e.srv.Load(); s != nil {
		s.resourceUpdated(name, principal, params)
	}
}

// UpstreamRequest counts a request sent upstream (upstream.Options.OnRequest).
func (e *Events) UpstreamRequest(name, method, outcome string, d time.Duration) {
	if s := e.srv.Load(); s != nil {
		s.metrics.upstreamRequest(name, method, outcome, d)
	}
}

// UpstreamUp records whether an upstream is up (upstream.Options.OnUp).
func (e *Events) UpstreamUp(name string, up bool) {
	if s := e.srv.Load(); s != nil {
		s.metrics.upstreamUp(name, up)
	}
}

// UpstreamProcesses records a stdio upstream's processes
// (upstream.Options.OnProcesses).
func (e *Events) UpstreamProcesses(name string, n int) {
	if s := e.srv.Load(); s != nil {
		s.metrics.upstreamProcesses(name, n)
	}
}

// UpstreamToolChanged counts a tool a pinned upstream withholds
// (upstream.Options.OnToolChange).
func (e *Events) UpstreamToolChanged(name string) {
	if s := e.srv.Load(); s != nil {
		s.metrics.upToolChanges.WithLabelValues(s.metrics.upstream(name)).Inc()
	}
}

// PolicyReloaded counts a reload attempt (policy.Options.OnReload).
func (e *Events) PolicyReloaded(err error) {
	if s := e.srv.Load(); s != nil {
		s.metrics.policyReloaded(err)
	}
}
