// Package wire builds toolgate from its configuration: the token verifier
// of the configured issuers, the policy engine (after the first bundle is
// downloaded, when policy.bundle.url is set), the built-in tools, and the
// server on them. It is the one place that knows both config and the
// packages it configures, so that config imports none of them and the
// server takes its parts as interfaces. cmd/toolgate, the server's tests and
// the benchmarks use it, so that they all run the same wiring.
package wire

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/ratelimit"
	"github.com/toolgate/toolgate/rego"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/sessionend"
	"github.com/toolgate/toolgate/tools"
	"github.com/toolgate/toolgate/upstream"
)

// Sources replace what the configuration names; the zero value takes the
// configuration's. The development default (`toolgate serve` without
// --config) uses them for its built-in issuer and its policy directory.
type Sources struct {
	// Issuers replace the configured issuers.
	Issuers []idp.Issuer
	// Policy replaces policy.dir (or the embedded default policy, or the
	// bundle).
	Policy *policy.Source
}

func (s Sources) issuers(cfg *config.Config) []idp.Issuer {
	if s.Issuers != nil {
		return s.Issuers
	}
	out := make([]idp.Issuer, 0, len(cfg.Issuers))
	for _, is := range cfg.Issuers {
		out = append(out, idp.Issuer{Name: is.Name, Provider: is.Provider, Issuer: is.Issuer, Audiences: is.Audience, JWKSURL: is.JWKSURL})
	}
	return out
}

// Server builds the parts o lacks from o.Config and src, then the server on
// them: Tools default to the built-in tools; without an Authenticator, the
// verifier of the issuers (with a Task that fetches their keys); without a
// Decider, the policy engine for the Tools (with a Task that watches
// policy.dir or polls the bundle, whose first download, bounded by
// policy.bundle.startup_timeout, happens here). Parts given in o are kept
// as they are: a test's stub. The verifier and the engine report to o.Events
// (made when nil), which the server binds to its metrics.
func Server(ctx context.Context, o server.Options, src Sources) (*server.Server, error) {
	cfg := o.Config
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Tools == nil {
		o.Tools = Tools(cfg)
	}
	if o.Events == nil {
		o.Events = new(server.Events)
	}
	if o.SessionKey == nil && cfg.Sessions.KeyEnv != "" {
		key, err := SessionKey(cfg.Sessions.KeyEnv, os.Getenv)
		if err != nil {
			return nil, err
		}
		o.SessionKey = key
	}
	if o.ReplicaID == "" {
		o.ReplicaID = ReplicaID(os.Getenv)
	}
	var upstreamTask server.Task
	if o.Upstreams == nil && len(cfg.Upstreams) > 0 {
		pool, err := Upstreams(cfg, o.Tools, o.Logger, o.Events)
		if err != nil {
			return nil, err
		}
		o.Upstreams, upstreamTask = pool, pool.Start
		if o.JWKS == nil {
			o.JWKS = pool.JWKS()
		}
	}
	if o.Authenticator == nil {
		v, err := Verifier(cfg, src, o.Logger, o.Events)
		if err != nil {
			return nil, err
		}
		o.Authenticator = v
		for _, is := range src.issuers(cfg) {
			o.AuthorizationServers = append(o.AuthorizationServers, is.Issuer)
		}
		o.Tasks = append(o.Tasks, func(ctx context.Context) (func(), error) {
			v.Start(ctx)
			return v.Close, nil
		})
	}
	if o.Decider == nil {
		e, task, err := Policy(ctx, cfg, src.Policy, o.Tools, policy.Options{
			Logger:         o.Logger,
			OnSwap:         o.Events.PolicySwapped,
			OnReload:       o.Events.PolicyReloaded,
			DynamicCatalog: o.Upstreams != nil,
		})
		if err != nil {
			return nil, err
		}
		o.Decider = e
		o.Tasks = append(o.Tasks, task)
	}
	if o.Limiter == nil {
		st, err := Limits(cfg)
		if err != nil {
			return nil, err
		}
		o.Limiter = st
		if o.SessionEnds == nil && o.SessionKey != nil && st.Client() != nil {
			o.SessionEnds = sessionend.NewRedis(st.Client())
		}
		o.Tasks = append(o.Tasks, func(ctx context.Context) (func(), error) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				<-ctx.Done()
				_ = st.Close()
			}()
			return func() { <-done }, nil
		})
	}
	if upstreamTask != nil {
		// After the policy's task: the first listing puts the upstream
		// tools in the policy's catalog.
		o.Tasks = append(o.Tasks, upstreamTask)
	}
	return server.New(o)
}

// Limits is the store that counts the policy's limits (limits.store):
// memory, or Redis with the password from limits.store_password_env.
func Limits(cfg *config.Config) (*ratelimit.Store, error) {
	l := cfg.Limits
	if l.Store == "memory" {
		return ratelimit.NewMemory()
	}
	if l.StorePasswordEnv != "" && os.Getenv(l.StorePasswordEnv) == "" {
		return nil, fmt.Errorf("limits.store_password_env: the environment variable %s is not set", l.StorePasswordEnv)
	}
	return ratelimit.NewRedis(ratelimit.RedisOptions{URL: l.Store, PasswordEnv: l.StorePasswordEnv, Timeout: l.StoreTimeout})
}

// MinSessionKey is the shortest session key accepted: as long as the
// HMAC-SHA256 output, RFC 2104 §3's recommended minimum.
const MinSessionKey = 32

// SessionKey is the fleet's session key, read from the environment
// variable sessions.key_env names (docs/deployment.md, "A fleet of replicas").
func SessionKey(env string, getenv func(string) string) ([]byte, error) {
	v := getenv(env)
	if len(v) < MinSessionKey {
		return nil, fmt.Errorf("sessions.key_env: the environment variable %s holds %d bytes; at least %d are needed (e.g. `openssl rand -base64 32`)", env, len(v), MinSessionKey)
	}
	return []byte(v), nil
}

// ReplicaID is the id this replica logs with its decisions: the
// environment variable TOOLGATE_REPLICA_ID, or else "<hostname>-<pid>",
// which tells apart processes on one host and pods (whose hostname is the
// pod's name) alike.
func ReplicaID(getenv func(string) string) string {
	if id := getenv("TOOLGATE_REPLICA_ID"); id != "" {
		return id
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// Tools are the built-in tools, unless builtin_tools is false.
func Tools(cfg *config.Config) []mcpserver.ServerTool {
	if !cfg.BuiltinTools {
		return []mcpserver.ServerTool{}
	}
	return tools.Builtin()
}

// Upstreams builds the pool of the configured upstreams beside the tools ts
// (whose names no upstream tool may take). It reports to ev when ev is not
// nil. It connects once it is started (Start).
func Upstreams(cfg *config.Config, ts []mcpserver.ServerTool, log *slog.Logger, ev *server.Events) (*upstream.Pool, error) {
	reserved := make([]string, 0, len(ts))
	for _, t := range ts {
		reserved = append(reserved, t.Tool.Name)
	}
	o := upstream.Options{Logger: log, Reserved: reserved, Version: server.Version, Issuer: cfg.PublicURL, LockFile: cfg.LockFile}
	if ev != nil {
		o.OnChange, o.OnRequest, o.OnUp, o.OnProcesses = ev.UpstreamsChanged, ev.UpstreamRequest, ev.UpstreamUp, ev.UpstreamProcesses
		o.OnToolChange, o.OnResourceUpdated = ev.UpstreamToolChanged, ev.UpstreamResourceUpdated
	}
	return upstream.New(cfg.Upstreams, o)
}

// Policy builds the engine of the configured policy, or of src when given,
// for the catalog of ts; opts get the configured cache size and evaluation
// timeout. When policy.bundle.url is set (and src is nil) it waits for the
// first bundle, up to policy.bundle.startup_timeout: toolgate does not
// serve before it has a policy. The Task keeps the policy current: it
// watches the directory, or polls the bundle server.
func Policy(ctx context.Context, cfg *config.Config, src *policy.Source, ts []mcpserver.ServerTool, opts policy.Options) (*policy.Engine, server.Task, error) {
	opts.CacheSize = offIfZero(cfg.Policy.DecisionCacheSize)
	opts.EvalTimeout = cfg.Policy.EvalTimeout
	catalog := server.Catalog(ts)
	if src != nil || cfg.Policy.Bundle.URL == "" {
		s := PolicySource(cfg)
		if src != nil {
			s = *src
		}
		e, err := policy.New(s, catalog, opts)
		if err != nil {
			return nil, nil, err
		}
		return e, func(ctx context.Context) (func(), error) { return nil, e.Watch(ctx) }, nil
	}
	bundles, err := policy.NewBundleSource(bundleOptions(cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("policy.bundle: %w", err)
	}
	first, cancel := context.WithTimeout(ctx, cfg.Policy.Bundle.StartupTimeout)
	b, err := bundles.First(first)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	e, err := policy.New(policy.Source{Bundle: b, Name: cfg.Policy.Bundle.URL}, catalog, opts)
	if err != nil {
		return nil, nil, err
	}
	return e, func(ctx context.Context) (func(), error) {
		polled := make(chan struct{})
		go func() { bundles.Poll(ctx, e); close(polled) }()
		return func() { <-polled }, nil
	}, nil
}

// Verifier builds the token verifier of the configured issuers, or of
// src.Issuers, with the configured token settings. It reports to ev when ev
// is not nil. Its keys are fetched once it is started (Start).
func Verifier(cfg *config.Config, src Sources, log *slog.Logger, ev *server.Events) (*idp.Verifier, error) {
	leeway := cfg.Tokens.Leeway
	if leeway == 0 {
		leeway = -1 // idp's way of saying none; its zero is the default
	}
	opts := idp.Options{
		Logger:             log,
		Leeway:             leeway,
		UnknownKIDInterval: cfg.Tokens.JWKSUnknownKIDInterval,
		RefreshInterval:    cfg.Tokens.JWKSRefreshInterval,
		FetchTimeout:       cfg.Tokens.JWKSTimeout,
		CacheSize:          offIfZero(cfg.Tokens.CacheSize),
	}
	if ev != nil {
		opts.OnValidation, opts.OnJWKSRefresh = ev.TokenValidated, ev.JWKSRefreshed
	}
	return idp.NewVerifier(src.issuers(cfg), opts)
}

// bundleOptions are policy.bundle as the policy package takes them.
func bundleOptions(cfg *config.Config) policy.BundleOptions {
	b := cfg.Policy.Bundle
	return policy.BundleOptions{URL: b.URL, Interval: b.PollingInterval, SigningKey: b.SigningKey, KeyID: b.KeyID, Algorithm: b.Algorithm}
}

// PolicySource is where a policy directory's policy comes from: policy.dir,
// or the default policy compiled into the binary when it is empty.
func PolicySource(cfg *config.Config) policy.Source {
	if cfg.Policy.Dir == "" {
		return policy.Source{FS: rego.FS}
	}
	return policy.Source{Dir: cfg.Policy.Dir}
}

// offIfZero maps a configured cache size, where 0 means off, to the
// packages' options, where 0 means the default and a negative size off.
func offIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
