// Package server is toolgate's HTTP face: the MCP endpoint behind the bearer
// check, the origin check, session binding and the policy gate; the RFC 9728
// metadata documents; health and readiness; the metrics. It takes its parts
// ready-made, as small interfaces (an Authenticator, a Decider) and the
// tools, so that it runs on stubs as well as on the verifier and the policy
// engine that internal/wire builds from the configuration.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/ratelimit"
)

// Version is reported to MCP clients in serverInfo.
var Version = "dev"

// Options are what a Server is made of: its configuration and its parts,
// built by the wiring (internal/wire). Config, Authenticator and Decider are
// required.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Authenticator says who holds a bearer token.
	Authenticator Authenticator
	// AuthorizationServers are the issuers the Authenticator trusts, as the
	// metadata names them (RFC 9728 §2, authorization_servers).
	AuthorizationServers []string
	// Decider is the policy, built for the catalog of Tools.
	Decider Decider
	// Tools are the tools served (the built-in ones).
	Tools []mcpserver.ServerTool
	// Upstreams, when set, serve their tools beside Tools; the Decider
	// should then be a CatalogSetter, which gets each new catalog.
	Upstreams Upstreams
	// JWKS, when set, is served at /.well-known/jwks.json: the public key
	// of the assertions toolgate signs for its upstreams (the Upstreams'
	// JWKS; nil when no upstream's auth is assertion, and then the path is
	// not found).
	JWKS []byte
	// Tasks keep the parts current while the server serves (see Task).
	Tasks []Task
	// Events, when the parts report to it, is bound to this server's
	// metrics and sessions (see Events).
	Events *Events
	// DecisionLog receives the decision log instead of decision_log.output
	// (tests).
	DecisionLog io.Writer
	// Limiter counts the calls the policy limits; nil: a memory store
	// (limits.store: memory).
	Limiter Limiter
	// SessionKey is the fleet's session key (sessions.key_env): with it,
	// a session opened on any replica that has it serves its principal
	// here too. Nil: sessions serve on this replica only.
	SessionKey []byte
	// SessionEnds, with a SessionKey, shares the ends of sessions with
	// the fleet's other replicas (wire: on a Redis limits.store).
	SessionEnds SessionEnds
	// ReplicaID names this replica in the decision log.
	ReplicaID string
}

// Server serves toolgate's HTTP surface.
type Server struct {
	cfg         *config.Config
	verifier    Authenticator
	policy      Decider
	log         *slog.Logger
	mcp         *mcpserver.MCPServer
	streamable  *mcpserver.StreamableHTTPServer
	sessions    *sessions
	inflight    *inflight
	metadata    []byte
	metadataURL string
	origins     map[string]bool
	publicHost  string
	handler     http.Handler
	metrics     *metrics
	decisions   *decisionLog
	dryRun      bool
	catalog     atomic.Pointer[catalogView]
	tasks       []Task
	builtin     []mcpserver.ServerTool
	upstreams   Upstreams
	upstreamMu  sync.Mutex // serialises upstreamsChanged and policyChanged's notification
	limiter     Limiter
	// others are the upstreams' prompts and resources (others.go), nil
	// when there are none; promptNames bound the metrics' prompt labels.
	others      UpstreamOthers
	promptNames atomic.Pointer[map[string]bool]
	subs        subscriptions // the client sessions' resource subscriptions (subscribe.go)
	// othersServed are the prompts and resources as last served (under
	// upstreamMu).
	othersServed othersServed
}

// SessionIdleTTL is how long an MCP session may stay idle before it is
// dropped.
const SessionIdleTTL = 30 * time.Minute

// New builds a Server from its configuration and parts. It fetches and
// compiles nothing: the parts are ready-made.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Config == nil || o.Authenticator == nil || o.Decider == nil {
		return nil, errors.New("server: Options need a Config, an Authenticator and a Decider")
	}
	cfg := o.Config
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		verifier:    o.Authenticator,
		policy:      o.Decider,
		log:         o.Logger,
		metadataURL: cfg.PublicURL + "/.well-known/oauth-protected-resource/mcp",
		origins:     map[string]bool{originKey(pub.Scheme + "://" + pub.Host): true},
		publicHost:  pub.Hostname(),
		dryRun:      cfg.Policy.DryRun,
		tasks:       o.Tasks,
		builtin:     o.Tools,
		upstreams:   o.Upstreams,
		limiter:     o.Limiter,
	}
	if s.limiter == nil {
		if s.limiter, err = ratelimit.NewMemory(); err != nil {
			return nil, err
		}
	}
	builtin := newCatalogView(Catalog(o.Tools), o.Tools)
	s.catalog.Store(builtin)
	for _, o := range cfg.AllowedOrigins {
		if k := originKey(trimSlash(o)); k != "" { // "" is what every non-origin maps to
			s.origins[k] = true
		}
	}
	var issuers []string
	for _, st := range s.verifier.Status() {
		issuers = append(issuers, st.Name)
	}
	var upstreams []string
	if o.Upstreams != nil {
		for _, st := range o.Upstreams.Status() {
			upstreams = append(upstreams, st.Name)
		}
	}
	s.metrics = newMetrics(builtin.names, issuers, upstreams)
	s.storeUp(true) // until a call or a ping says otherwise
	if s.limiter.Kind() != "memory" {
		s.tasks = append(slices.Clip(s.tasks), s.pingStore)
	}
	s.sessions = newSessions(o.SessionKey, func(n int) { s.metrics.sessionsActive.Set(float64(n)) })
	s.sessions.onEnd = s.sessionEnded
	if o.SessionEnds != nil && o.SessionKey != nil {
		s.sessions.shared = &sharedEnds{o.SessionEnds, cfg.Limits.StoreTimeout, o.Logger}
		s.tasks = append(slices.Clip(s.tasks), s.sessions.watchEnds)
	}
	s.inflight = newInflight()
	if o.DecisionLog != nil {
		s.decisions = newDecisionLog(o.DecisionLog, cfg.DecisionLog, nil, o.Logger, s.metrics.decisionLogFailed)
	} else if s.decisions, err = openDecisionLog(cfg.DecisionLog, o.Logger, s.metrics.decisionLogFailed); err != nil {
		return nil, err
	}
	s.decisions.replica = o.ReplicaID
	s.metrics.policyInForce(s.policy.Revision(), s.policy.LoadedAt())
	// RFC 9728 §2 and §3.2.
	s.metadata, err = json.Marshal(map[string]any{
		"resource":                 cfg.ResourceURL(),
		"authorization_servers":    append([]string{}, o.AuthorizationServers...), // a list, never null
		"scopes_supported":         append([]string{}, cfg.ScopesSupported...),
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "toolgate",
	})
	if err != nil {
		return nil, err
	}

	hooks := &mcpserver.Hooks{}
	hooks.AddBeforeCallTool(s.callAccepted)
	hooks.AddAfterListTools(s.listServed)
	opts := []mcpserver.ServerOption{
		mcpserver.WithHooks(hooks),
		mcpserver.WithToolCapabilities(true),
		mcpserver.WithToolFilter(s.filterTools),
		mcpserver.WithToolHandlerMiddleware(s.enforceCall), // recovers from a tool's panic too
	}
	opts = append(opts, s.othersOptions(o.Upstreams, hooks)...)
	s.mcp = mcpserver.NewMCPServer("toolgate", Version, opts...)
	s.mcp.AddTools(o.Tools...)
	s.streamable = mcpserver.NewStreamableHTTPServer(s.mcp,
		mcpserver.WithEndpointPath("/mcp"),
		mcpserver.WithSessionIdManagerResolver(s.sessions),
		mcpserver.WithSessionIdleTTL(SessionIdleTTL),
		mcpserver.WithStreamableHTTPLogger(o.Logger),
		// The gate checks Host and Origin itself (checkOrigin), so that it
		// also works behind a reverse proxy on the same host.
		mcpserver.WithDisableLocalhostProtection(true),
	)

	r := mux.NewRouter()
	r.Use(s.metrics.instrument)
	r.NotFoundHandler = s.metrics.instrument(http.NotFoundHandler())
	r.MethodNotAllowedHandler = s.metrics.instrument(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusMethodNotAllowed)
	}))
	if cfg.Metrics.Listen == "" {
		r.Handle("/metrics", s.metrics.handler()).Methods(http.MethodGet)
	}
	r.Handle("/.well-known/oauth-protected-resource", publicJSON(s.metadata)).Methods(http.MethodGet, http.MethodHead, http.MethodOptions)
	r.Handle("/.well-known/oauth-protected-resource/mcp", publicJSON(s.metadata)).Methods(http.MethodGet, http.MethodHead, http.MethodOptions)
	if len(o.JWKS) > 0 {
		r.Handle("/.well-known/jwks.json", publicJSON(o.JWKS)).Methods(http.MethodGet, http.MethodHead, http.MethodOptions)
	}
	r.HandleFunc("/healthz", s.serveHealth).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/readyz", s.serveReady).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/mcp", s.checkOrigin(http.HandlerFunc(s.serveMCP)))
	s.handler = r
	if o.Events != nil && !o.Events.srv.CompareAndSwap(nil, s) {
		return nil, errors.New("server: Options.Events already serves another Server")
	}
	return s, nil
}

// Catalog is what the policy sees of the tools (the built-in ones).
func Catalog(tools []mcpserver.ServerTool) []policy.Tool {
	out := make([]policy.Tool, 0, len(tools))
	for _, t := range tools {
		out = append(out, catalogTool(t.Tool, policy.Builtin))
	}
	return out
}

func catalogTool(t mcp.Tool, server string) policy.Tool {
	var ann map[string]any
	if b, err := json.Marshal(t.Annotations); err == nil {
		_ = json.Unmarshal(b, &ann)
	}
	return policy.Tool{Name: t.Name, Description: t.Description, Annotations: ann, Server: server}
}

// catalogView is the catalog as the gate reads it: the names in order
// (the decision log's visible_tools, dry-run's would_hide), each tool's
// server (the decision log's server, the metrics' tool labels) and each
// tool's digest (to tell whose list changed, notify.go).
type catalogView struct {
	names  []string
	server map[string]string
	// withheld are the tools pinned upstreams withhold, and their server
	// (Withholder): a call of one is decided tool_changed.
	withheld map[string]string
	digest   map[string]uint64
}

func newCatalogView(catalog []policy.Tool, tools []mcpserver.ServerTool) *catalogView {
	v := &catalogView{names: make([]string, 0, len(catalog)), server: make(map[string]string, len(catalog)), digest: toolDigests(tools)}
	for _, t := range catalog {
		v.names = append(v.names, t.Name)
		v.server[t.Name] = t.Server
	}
	return v
}

// upstreamsChanged serves the upstreams' tools as they are now: the policy
// gets the new catalog first, so that a tool is never served before the
// policy knows its server; then the gate's own view and the metrics' tool
// labels; then the tool list is replaced, which tells the sessions whose
// list changed (MCP server/tools, "List Changed Notification"; notify.go).
func (s *Server) upstreamsChanged() {
	if s.upstreams == nil {
		return
	}
	s.upstreamMu.Lock()
	defer s.upstreamMu.Unlock()
	ups := s.upstreams.Tools()
	catalog := append(Catalog(s.builtin), UpstreamCatalog(ups)...)
	tools := slices.Clone(s.builtin)
	for _, t := range ups {
		tools = append(tools, t.ServerTool)
	}
	if cs, ok := s.policy.(CatalogSetter); ok {
		if err := cs.SetCatalog(catalog); err != nil {
			s.log.Error("upstream tools not served: the policy refused the catalog", "error", err)
			return
		}
	}
	view := newCatalogView(catalog, tools)
	if w, ok := s.upstreams.(Withholder); ok {
		view.withheld = w.Withheld()
	}
	s.catalog.Store(view)
	s.metrics.setTools(view.names)
	s.retell(context.Background())
	s.mcp.SetTools(tools...)
	s.othersChanged()
}

// Handler is the whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

// policyChanged tells the connected sessions whose tool list changed
// (MCP server/tools, "List Changed Notification"; notify.go).
func (s *Server) policyChanged(revision string) {
	s.metrics.policyInForce(revision, time.Now())
	// Not in the reload, which holds the engine's lock: every known
	// session's list is evaluated first. upstreamMu orders it with an
	// upstream change's.
	go func() {
		s.upstreamMu.Lock()
		defer s.upstreamMu.Unlock()
		s.retell(context.Background())
		s.mcp.SendNotificationToAllClients(mcp.MethodNotificationToolsListChanged, nil)
	}()
}

// Policy is the policy in force.
func (s *Server) Policy() Decider { return s.policy }

// Serve starts the Tasks (the issuers' keys fetched, the policy watched)
// and answers on ln until ctx ends; then it shuts down gracefully: new
// connections are refused, in-flight requests finish (up to grace), open
// streams are closed, and the Tasks end.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	defer s.decisions.Close()
	ctx, cancel := context.WithCancel(ctx)
	var waits []func()
	defer func() {
		cancel()
		for i := len(waits) - 1; i >= 0; i-- {
			waits[i]()
		}
	}()
	for _, start := range s.tasks {
		wait, err := start(ctx)
		if wait != nil {
			waits = append(waits, wait)
		}
		if err != nil {
			return err
		}
	}
	if s.cfg.Metrics.Listen != "" {
		stop, err := s.serveMetrics(s.cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		defer stop()
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // the body too; responses may stream, so no WriteTimeout
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// End the long-lived GET streams and mcp-go's idle-session sweeper
	// first, so that the HTTP shutdown only waits for real requests.
	_ = s.streamable.Shutdown(sctx)
	err := hs.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("shutdown grace period over; closing open connections")
		err = hs.Close()
	}
	<-errc
	return err
}

// serveMetrics puts /metrics on its own address, to keep it private.
func (s *Server) serveMetrics(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	s.log.Info("metrics listening", "address", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}

// publicJSON serves a public document: the RFC 9728 metadata, the JWKS.
// Browser-based clients fetch them cross-origin, so any origin may read
// them, and preflight the MCP-Protocol-Version header the MCP TypeScript
// SDK sends with them.
func publicJSON(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD")
			w.Header().Set("Access-Control-Allow-Headers", "Mcp-Protocol-Version")
			w.Header().Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(body)
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// serveReady is 200 once a policy is loaded and every issuer's keys were
// fetched once; a failed reload is named in the body but keeps it ready,
// since the last good policy serves (docs/http.md, "Health and readiness").
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	body := map[string]any{
		"policy_revision": s.policy.Revision(),
		"policy_loaded":   s.policy.LoadedAt().UTC().Format(time.RFC3339),
	}
	if err := s.policy.LastError(); err != nil {
		body["policy_reload_error"] = err.Error()
	}
	if err := s.decisions.Err(); err != nil {
		body["decision_log_error"] = err.Error()
	}
	if s.dryRun {
		body["policy_dry_run"] = true
	}
	status := http.StatusOK
	issuers := s.verifier.Status()
	var pending []string
	for _, st := range issuers {
		if !st.KeysLoaded {
			pending = append(pending, st.Name)
		}
	}
	if len(pending) > 0 {
		status = http.StatusServiceUnavailable
		body["issuers_without_keys"] = pending
	}
	body["issuers"] = issuers
	// Named, never not-ready: a limit store that is down refuses the
	// limited calls only (limits.on_store_error), and every replica shares
	// it, so taking them all out of the load balancer would refuse every
	// call instead.
	body["limits_store"] = s.limiter.Kind()
	body["limits_store_up"] = s.checkStore(context.Background())
	if s.upstreams != nil {
		// Named, never not-ready once listed: an upstream that is down
		// costs its own tools only. Until the first listing has ended
		// (each bounded by its timeout), toolgate is not ready: a client
		// would see a catalog without the upstreams' tools.
		st := s.upstreams.Status()
		body["upstreams"] = st
		var pending []string
		for _, u := range st {
			if u.Pending {
				pending = append(pending, u.Name)
			}
		}
		if len(pending) > 0 {
			status = http.StatusServiceUnavailable
			body["upstreams_pending"] = pending
		}
	}
	body["ready"] = status == http.StatusOK
	writeJSON(w, status, body)
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
