// Package upstream discovers and calls the MCP servers toolgate puts behind
// its gate (issue 15; docs/configuration.md, "Upstream MCP servers"). It is
// an MCP client, on mcp-go's: it connects to each upstream (a stdio process
// or a Streamable HTTP endpoint), lists its tools, and forwards the calls the
// gate has allowed. It decides nothing: the server filters and enforces, as
// for its built-in tools.
//
// What never crosses to an upstream: the client's Authorization header, its
// token and its Mcp-Session-Id (MCP authorization, "Token Passthrough" is
// forbidden). A forwarded call is a new request built from the tool's name
// and arguments alone, on toolgate's own session with the upstream.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
)

// MaxTools is how many tools one upstream may list; the rest are dropped.
const MaxTools = 1000

// Tool is one upstream tool as the gate serves it: named with the
// upstream's prefix, its handler forwarding to the upstream.
type Tool struct {
	// Server is the upstream's name (the policy input's tools[_].server).
	Server string
	mcpserver.ServerTool
	Pin
}

// Options tune a Pool.
type Options struct {
	Logger *slog.Logger
	// OnChange is called after a refresh changed the tools of any
	// upstream (one came up, went down, or listed other tools).
	OnChange func()
	// RefreshInterval is how often each upstream's tools are listed again;
	// 0 is 30s. A failed call, or the upstream's tools/list_changed, asks
	// for a listing at once while the upstream is up; a down one is tried
	// with backoff (RetryMin doubling up to RetryMax, at most this).
	RefreshInterval time.Duration
	// Reserved are names no upstream tool may take (the built-in tools').
	Reserved []string
	// Getenv reads the environment variables auth names (os.Getenv when nil).
	Getenv func(string) string
	// Version is toolgate's, sent as clientInfo.
	Version string
	// Issuer is toolgate's public_url: the iss of the assertions it signs
	// for upstreams with auth.type assertion.
	Issuer string

	// What the pool does, for metrics (server.Events has these methods;
	// the package imports no server). Each may be nil.
	//
	// OnRequest is told of every request sent to an upstream, once it is
	// answered or failed: its MCP method (one of Methods) and outcome (one
	// of Outcomes). A tools/call refused at max_processes, or whose session
	// could not be opened, counts too: it is what a client waited for.
	OnRequest func(upstream, method, outcome string, d time.Duration)
	// OnUp is told of every listing's verdict: up or down.
	OnUp func(upstream string, up bool)
	// OnProcesses is told the number of stdio processes of an upstream
	// running (one per open session) whenever it changes.
	OnProcesses func(upstream string, n int)

	// LockFile is the lock file (pin.go): "" for none.
	LockFile string
	// OnToolChange is told of each tool a pinned upstream withholds, once
	// per new definition.
	OnToolChange func(upstream string)
	// OnResourceUpdated is told of each notifications/resources/updated an
	// upstream sends (subscribe.go): the upstream, the owner of the session
	// it came on (the owner WithOwner gave, else the principal's key; "" for
	// the shared session) and its params.
	OnResourceUpdated func(upstream, principal string, params map[string]any)
}

// The MCP methods toolgate sends upstream, as OnRequest names them.
var Methods = []string{string(mcp.MethodInitialize), string(mcp.MethodToolsList), string(mcp.MethodToolsCall)}

// Outcomes of a request sent upstream, as OnRequest names them.
const (
	OutcomeSuccess     = "success"     // answered (a tool result with isError is an answer)
	OutcomeError       = "error"       // answered with a JSON-RPC error or a malformed result
	OutcomeTimeout     = "timeout"     // no answer within the upstream's timeout
	OutcomeUnavailable = "unavailable" // not delivered: connection refused or lost, process gone
	OutcomeRefused     = "refused"     // not sent: the upstream is at max_processes
	OutcomeCanceled    = "canceled"    // the client or toolgate gave up first
)

// Outcomes are every outcome OnRequest reports.
var Outcomes = []string{OutcomeSuccess, OutcomeError, OutcomeTimeout, OutcomeUnavailable, OutcomeRefused, OutcomeCanceled}

// Pool is the configured upstreams.
type Pool struct {
	ups      []*Upstream
	opts     Options
	reserved map[string]bool
	ctx      context.Context // the processes' and connections' lifetime
	signer   *Signer         // when an upstream's auth is assertion
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	pins     *pins
	listed   chan struct{} // closed once every upstream was listed once (Listed)
}

// New builds the pool of cfgs (validated by config). It connects to
// nothing: Start does. An auth secret (a header's value, a client secret)
// whose environment variable is unset is an error.
func New(cfgs []config.Upstream, o Options) (*Pool, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OnChange == nil {
		o.OnChange = func() {}
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 30 * time.Second
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.OnRequest == nil {
		o.OnRequest = func(string, string, string, time.Duration) {}
	}
	if o.OnUp == nil {
		o.OnUp = func(string, bool) {}
	}
	if o.OnProcesses == nil {
		o.OnProcesses = func(string, int) {}
	}
	if o.OnToolChange == nil {
		o.OnToolChange = func(string) {}
	}
	if o.OnResourceUpdated == nil {
		o.OnResourceUpdated = func(string, string, map[string]any) {}
	}
	ps, err := newPins(cfgs, o)
	if err != nil {
		return nil, err
	}
	p := &Pool{opts: o, reserved: map[string]bool{}, pins: ps, listed: make(chan struct{})}
	// Whatever changed, the tools withheld are logged first.
	p.opts.OnChange = func() { p.checkPins(); o.OnChange() }
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, n := range o.Reserved {
		p.reserved[n] = true
	}
	var errs []error
	for i, c := range cfgs {
		if c.MaxResultBytes <= 0 { // a configuration built by hand, not read
			c.MaxResultBytes = config.DefaultMaxResultBytes
		}
		u := &Upstream{cfg: c, pool: p, log: o.Logger.With("upstream", c.Name), sessions: map[string]*session{},
			refresh: make(chan struct{}, 1)}
		if c.Prefix != nil {
			u.prefix = *c.Prefix
		}
		switch c.Auth.Type {
		case "", "none":
		case "header":
			v := o.Getenv(c.Auth.ValueEnv)
			if v == "" {
				errs = append(errs, fmt.Errorf("upstreams[%d].auth.value_env: the environment variable %s is not set", i, c.Auth.ValueEnv))
			}
			u.headers = map[string]string{c.Auth.HeaderName: v}
		case "assertion":
			if p.signer == nil {
				s, err := NewSigner(o.Issuer)
				if err != nil {
					errs = append(errs, fmt.Errorf("upstreams[%d].auth: no assertion signing key: %w", i, err))
				}
				p.signer = s
			}
		}
		if c.URL != "" {
			var rt http.RoundTripper = &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
				ForceAttemptHTTP2: true, ResponseHeaderTimeout: c.Timeout}
			if c.Auth.Type == "client_credentials" {
				secret := o.Getenv(c.Auth.ClientSecretEnv)
				if secret == "" {
					errs = append(errs, fmt.Errorf("upstreams[%d].auth.client_secret_env: the environment variable %s is not set", i, c.Auth.ClientSecretEnv))
				}
				rt = clientCredentials(c.Auth, secret, c.Timeout, rt)
			}
			u.http = &http.Client{
				Transport: capBodies{rt, c.MaxResultBytes},
				// A redirect could carry the auth header elsewhere.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
		}
		p.ups = append(p.ups, u)
	}
	if err := errors.Join(errs...); err != nil {
		p.cancel()
		return nil, err
	}
	return p, nil
}

// Start lists every upstream's tools once, in parallel and in the
// background, each bounded by its timeout (an upstream that is down starts
// without tools; Listed says when all were listed), then keeps them
// current until ctx ends. It is a server.Task: the returned function waits
// for the end, after which every session is closed and every process
// stopped.
func (p *Pool) Start(ctx context.Context) (func(), error) {
	p.wg.Go(func() {
		var first sync.WaitGroup
		for _, u := range p.ups {
			first.Go(func() { u.list(ctx) })
		}
		first.Wait()
		p.opts.OnChange()
		for _, u := range p.ups {
			u.mu.Lock()
			u.tried = true
			u.mu.Unlock()
		}
		close(p.listed)
		for _, u := range p.ups {
			p.wg.Go(func() { u.keepCurrent(ctx) })
		}
	})
	p.wg.Go(func() { p.watchLock(ctx) })
	return func() { p.wg.Wait(); p.Close() }, nil
}

// Listed is closed once every upstream has been listed once, up or down
// (each bounded by its timeout), and its tools are served. Start does not
// wait for it, so that the server answers meanwhile: its /readyz says not
// ready until then, and its /.well-known/jwks.json is served, which an
// upstream with auth.type assertion may need to answer toolgate's first
// initialize.
func (p *Pool) Listed() <-chan struct{} { return p.listed }

// Close ends every session and stops every process.
func (p *Pool) Close() {
	p.cancel()
	for _, u := range p.ups {
		u.closeAll()
	}
}

// Tools are the tools of the upstreams that are up, in configuration order.
// A name taken already (by a reserved name or an earlier upstream) is
// dropped, with a log line at each refresh that finds it.
// A pinned upstream's tool that is not the lock's is withheld (Withheld).
func (p *Pool) Tools() []Tool {
	taken := map[string]string{}
	var out []Tool
	for _, u := range p.ups {
		for _, t := range u.tools() {
			if !p.pins.admit(u, &t) {
				continue // withheld: Withheld names it
			}
			if p.reserved[t.Tool.Name] {
				u.log.Debug("upstream tool dropped: a built-in tool has its name", "tool", t.Tool.Name)
				continue
			}
			if other, ok := taken[t.Tool.Name]; ok {
				u.log.Debug("upstream tool dropped: another upstream has its name", "tool", t.Tool.Name, "other", other)
				continue
			}
			taken[t.Tool.Name] = u.cfg.Name
			out = append(out, t)
		}
	}
	return out
}

// JWKS is the public key of the assertions toolgate signs for its
// upstreams (RFC 7517 §5), or nil when no upstream's auth is assertion.
func (p *Pool) JWKS() []byte {
	if p.signer == nil {
		return nil
	}
	return p.signer.JWKS()
}

// Status is one upstream's state, for /readyz.
type Status struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Tools int    `json:"tools"`
	Error string `json:"error,omitempty"`
	// Pending: the first listing has not ended yet (Start runs it in the
	// background).
	Pending bool `json:"pending,omitempty"`
}

// Status reports every upstream, in configuration order.
func (p *Pool) Status() []Status {
	out := make([]Status, 0, len(p.ups))
	for _, u := range p.ups {
		u.mu.Lock()
		st := Status{Name: u.cfg.Name, Up: u.up, Tools: len(u.listed), Pending: !u.tried}
		if u.lastErr != nil {
			st.Error = u.lastErr.Error()
		}
		u.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// Upstream is one configured MCP server.
type Upstream struct {
	cfg     config.Upstream
	pool    *Pool
	log     *slog.Logger
	prefix  string
	headers map[string]string // auth, sent with every HTTP request
	http    *http.Client      // pooled connections (Streamable HTTP)
	refresh chan struct{}     // a call failed, or tools/list_changed: list again now
	procs   atomic.Int64      // stdio processes running
	calls   sync.Map          // minted progress token -> *inflight (call.go)
	subMu   sync.Mutex        // serialises subscribe and unsubscribe (subscribe.go)

	mu       sync.Mutex
	tried    bool // listed once, up or down, and what it found served
	up       bool
	lastErr  error
	listed   []Tool              // as served: prefixed, with handlers
	raw      []byte              // the listed tools as received, to tell a change
	others   others              // prompts, resources and templates (others.go)
	ctl      *session            // lists tools; serves every call when sessions: shared
	sessions map[string]*session // per_principal: principal key -> its session
	// lost are the sessions dropped while they held subscriptions, whose
	// subscriptions are made again once the upstream is up (subscribe.go).
	lost []*session
}

// session is one MCP session with the upstream (for stdio: one process).
// ready closes once the dial is done; c or err is then set.
type session struct {
	ready    chan struct{}
	c        *client.Client
	err      error
	once     sync.Once
	closed   func()       // after c is closed
	lastUsed atomic.Int64 // unix nanoseconds
	busy     atomic.Int32 // calls in flight: an idle sweep leaves it
	// subs are the holders (client sessions) of the subscription to each
	// URI on this session (subscribe.go; under Upstream.subMu); subscribed
	// is how many URIs: an idle sweep leaves a session with any.
	subs       map[string]map[string]bool
	subscribed atomic.Int32
	// owner is the principal whose session it is (nil: the listing or
	// shared session) and ownerKey the key of its sessions (sessionOwner):
	// whom to subscribe again for when it is lost.
	owner    *idp.Principal
	ownerKey string
}

// keepCurrent lists the tools again every RefreshInterval, or at once when
// asked (a call failed, the upstream sent notifications/tools/list_changed),
// and stops idle per-principal sessions. While the upstream is down it is
// tried again with exponential backoff, not on every ask: a process that
// exits at start, or an address that refuses connections, is not retried in
// a tight loop.
func (u *Upstream) keepCurrent(ctx context.Context) {
	sweep := time.NewTicker(max(u.cfg.IdleTimeout/2, 10*time.Millisecond))
	defer sweep.Stop()
	var b backoff
	next := time.NewTimer(b.after(u.isUp(), u.pool.opts.RefreshInterval))
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			u.sweepIdle()
			continue
		case <-u.refresh:
			if !u.isUp() {
				continue // the backoff says when
			}
		case <-next.C:
		}
		changed := u.list(ctx)
		next.Reset(b.after(u.isUp(), u.pool.opts.RefreshInterval))
		if changed {
			u.pool.opts.OnChange()
		}
		if u.isUp() {
			u.resubscribe(ctx)
		}
	}
}

// Backoff of a down upstream: the first retry RetryMin after the failure,
// each next one twice as late, at most RetryMax (or RefreshInterval, if it
// is shorter).
const (
	RetryMin = time.Second
	RetryMax = time.Minute
)

// backoff is the wait before the next listing.
type backoff struct{ d time.Duration }

// after is the wait after a listing that found the upstream up or down:
// every (the refresh interval) when up, and the backoff, reset by an up,
// when down.
func (b *backoff) after(up bool, every time.Duration) time.Duration {
	if up {
		b.d = 0
		return every
	}
	b.d = min(max(2*b.d, RetryMin), RetryMax, every)
	return b.d
}

func (u *Upstream) isUp() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.up
}

// list fetches the tool list and reports whether what is served changed.
// On failure the upstream is down: its tools are withdrawn and its listing
// session closed, so that the next attempt connects (or starts) afresh.
func (u *Upstream) list(ctx context.Context) (changed bool) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	s, err := u.control(ctx)
	var raw []json.RawMessage
	if err == nil {
		// Each tool's JSON as received, its schemas above all, is what
		// reaches the client (mcp-go's typed schemas keep only some
		// keywords).
		raw, err = u.listPages(ctx, s.c, mcp.MethodToolsList, "tools")
	}
	u.pool.opts.OnUp(u.cfg.Name, err == nil)
	if err != nil {
		if ctx.Err() != nil && u.pool.ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", u.cfg.Timeout)
		}
		u.mu.Lock()
		wasUp := u.up
		u.up, u.lastErr, u.listed, u.raw = false, err, nil, nil
		u.others = others{}
		u.dropControl()
		u.mu.Unlock()
		if wasUp {
			u.log.Error("upstream down; its tools are withdrawn", "error", err)
		} else {
			u.log.Warn("upstream unavailable", "error", err)
		}
		return wasUp
	}
	tools, rawAll := u.parse(raw)
	more := u.listOthers(ctx, s.c)
	u.mu.Lock()
	defer u.mu.Unlock()
	changed = !u.up || !bytes.Equal(rawAll, u.raw) || !more.equal(u.others)
	u.others = more
	if !u.up {
		u.log.Info("upstream up", "tools", len(tools))
	}
	u.up, u.lastErr, u.listed, u.raw = true, nil, tools, rawAll
	return changed
}

var listIDs atomic.Uint64

// parse keeps the tools the gate can serve, each with its schemas as
// received, and the JSON of them all (to tell a change). A tool over the
// cap, with a name outside MCP's characters, a name listed twice, or
// invalid x-mcp-header annotations is dropped with a log line.
func (u *Upstream) parse(raw []json.RawMessage) ([]Tool, []byte) {
	if len(raw) > MaxTools {
		u.log.Warn("upstream lists too many tools; the rest are dropped", "listed", len(raw), "kept", MaxTools)
		raw = raw[:MaxTools]
	}
	out := make([]Tool, 0, len(raw))
	seen := map[string]bool{}
	for i, b := range raw {
		var t mcp.Tool
		var schemas struct {
			Input  json.RawMessage `json:"inputSchema"`
			Output json.RawMessage `json:"outputSchema"`
		}
		if err := json.Unmarshal(b, &t); err != nil || json.Unmarshal(b, &schemas) != nil {
			u.log.Warn("upstream tool dropped: malformed", "index", i, "error", err)
			continue
		}
		name := t.Name
		switch {
		case !config.IsToolName(name) || !config.IsToolName(u.prefix+name):
			u.log.Warn("upstream tool dropped: its name is not a valid MCP tool name", "tool", fmt.Sprintf("%.140q", name))
			continue
		case seen[name]:
			u.log.Warn("upstream tool dropped: listed twice", "tool", name)
			continue
		}
		seen[name] = true
		t.InputSchema, t.RawInputSchema = mcp.ToolInputSchema{}, schemas.Input
		if len(bytes.TrimSpace(t.RawInputSchema)) == 0 || string(t.RawInputSchema) == "null" {
			t.RawInputSchema = json.RawMessage(`{"type":"object"}`)
		}
		t.OutputSchema, t.RawOutputSchema = mcp.ToolOutputSchema{}, nil
		if len(schemas.Output) > 0 && string(schemas.Output) != "null" {
			t.RawOutputSchema = schemas.Output
		}
		if err := mcp.ValidateParamHeaderAnnotations(&t); err != nil {
			u.log.Warn("upstream tool dropped: invalid x-mcp-header annotations", "tool", name, "error", err)
			continue
		}
		def, digest, err := Definition(b)
		if err != nil {
			u.log.Warn("upstream tool dropped: malformed", "tool", name, "error", err)
			continue
		}
		t.Name = u.prefix + name
		out = append(out, Tool{Server: u.cfg.Name, ServerTool: mcpserver.ServerTool{Tool: t, Handler: u.forward(name)},
			Pin: Pin{Digest: digest, Definition: def, name: name}})
	}
	all, _ := json.Marshal(raw)
	return out, all
}

func (u *Upstream) tools() []Tool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.listed)
}

// forward is the handler of the upstream tool name: a new request with the
// tool's own name and the arguments, nothing else of the client's.
func (u *Upstream) forward(name string) mcpserver.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
		defer cancel()
		start := time.Now()
		if !u.isUp() {
			// Its tools are withdrawn, but a client may call one it listed
			// before: starting a session now would bypass the backoff.
			err := transport.NewError(errors.New("the upstream is down"))
			u.observe(ctx, mcp.MethodToolsCall, start, err)
			return mcp.NewToolResultError(fmt.Sprintf("upstream %s is unavailable", u.cfg.Name)), nil
		}
		s, key, err := u.sessionFor(ctx)
		if err != nil {
			u.observe(ctx, mcp.MethodToolsCall, start, err)
			return u.failed(ctx, err), nil
		}
		s.busy.Add(1)
		defer s.busy.Add(-1)
		s.lastUsed.Store(time.Now().UnixNano())
		return u.call(ctx, start, s, key, name, req)
	}
}

// failed is the result of a call that did not reach an answer.
func (u *Upstream) failed(ctx context.Context, err error) *mcp.CallToolResult {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return mcp.NewToolResultError(fmt.Sprintf("upstream %s did not answer within %s", u.cfg.Name, u.cfg.Timeout))
	}
	var ce *capError
	if errors.As(err, &ce) {
		return mcp.NewToolResultError(ce.Error())
	}
	u.log.Warn("upstream call failed", "error", err)
	// Is the upstream down, or was it this session? Listing again tells.
	u.askRefresh()
	return mcp.NewToolResultError(fmt.Sprintf("upstream %s is unavailable", u.cfg.Name))
}

type capError struct{ msg string }

func (e *capError) Error() string { return e.msg }

type ownerKey struct{}

// WithOwner says whose per_principal upstream session a request of ctx
// goes on, where the principal alone does not tell: the gate's token-less
// clients are one principal to the policy, told apart by their address.
// Without it, the session is the principal's (iss + sub).
func WithOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerKey{}, owner)
}

// sessionOwner is the principal in ctx and the key of its per_principal
// sessions: the owner WithOwner gave, else the principal's (iss + sub).
func sessionOwner(ctx context.Context) (*idp.Principal, string, bool) {
	p, ok := idp.PrincipalFrom(ctx)
	if !ok {
		return nil, "", false
	}
	if owner, ok := ctx.Value(ownerKey{}).(string); ok && owner != "" {
		return p, owner, true
	}
	return p, p.Key(), true
}

// sessionFor is the session a call of the principal in ctx goes on: the
// shared one, or the principal's own (opened on first use; for stdio, at
// most max_processes of them).
func (u *Upstream) sessionFor(ctx context.Context) (*session, string, error) {
	if u.cfg.Sessions == "shared" {
		s, err := u.control(ctx)
		return s, "", err
	}
	p, key, ok := sessionOwner(ctx)
	if !ok {
		return nil, "", errors.New("no principal")
	}
	u.mu.Lock()
	s, ok := u.sessions[key]
	if !ok {
		if len(u.cfg.Command) > 0 && len(u.sessions) >= u.cfg.MaxProcesses {
			u.mu.Unlock()
			u.log.Warn("upstream at max_processes; a new principal is refused", "max_processes", u.cfg.MaxProcesses)
			return nil, "", &capError{fmt.Sprintf("upstream %s is at its limit of %d processes; try again later", u.cfg.Name, u.cfg.MaxProcesses)}
		}
		s = u.dial(p, key, false)
		u.sessions[key] = s
	}
	u.mu.Unlock()
	return s, key, u.wait(ctx, key, s)
}

// control is the listing session, which serves the calls when sessions are
// shared; it is opened on first use.
func (u *Upstream) control(ctx context.Context) (*session, error) {
	u.mu.Lock()
	s := u.ctl
	if s == nil {
		s = u.dial(nil, "", true)
		u.ctl = s
	}
	u.mu.Unlock()
	return s, u.wait(ctx, "", s)
}

// wait waits for s's dial; a failed one is forgotten, so the next use dials
// again.
func (u *Upstream) wait(ctx context.Context, key string, s *session) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.err != nil {
		u.drop(key, s)
	}
	return s.err
}

// drop forgets s (under key; "" is the control session) and closes it.
func (u *Upstream) drop(key string, s *session) {
	u.mu.Lock()
	if key == "" && u.ctl == s {
		u.ctl = nil
		u.keepLost(s)
	} else if key != "" && u.sessions[key] == s {
		delete(u.sessions, key)
		u.keepLost(s)
	}
	u.mu.Unlock()
	go s.close()
}

// dropControl forgets the control session; the caller holds u.mu.
func (u *Upstream) dropControl() {
	if s := u.ctl; s != nil {
		u.ctl = nil
		u.keepLost(s)
		go s.close()
	}
}

// keepLost keeps a dropped session that held subscriptions, so that they
// are made again (resubscribe); the caller holds u.mu.
func (u *Upstream) keepLost(s *session) {
	if s.subscribed.Load() > 0 {
		u.lost = append(u.lost, s)
	}
}

// sweepIdle closes the per-principal sessions unused for idle_timeout.
func (u *Upstream) sweepIdle() {
	cutoff := time.Now().Add(-u.cfg.IdleTimeout).UnixNano()
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, s := range u.sessions {
		select {
		case <-s.ready:
		default:
			continue // still dialling
		}
		if s.busy.Load() == 0 && s.subscribed.Load() == 0 && s.lastUsed.Load() < cutoff {
			delete(u.sessions, k)
			go s.close()
		}
	}
}

func (u *Upstream) closeAll() {
	u.mu.Lock()
	all := make([]*session, 0, len(u.sessions)+1)
	for _, s := range u.sessions {
		all = append(all, s)
	}
	if u.ctl != nil {
		all = append(all, u.ctl)
	}
	u.ctl, u.sessions = nil, map[string]*session{}
	u.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

func (s *session) close() {
	<-s.ready
	s.once.Do(func() {
		if s.c != nil {
			_ = s.c.Close()
			s.closed()
		}
	})
}

// observe reports a request of method started at start that ended with err.
func (u *Upstream) observe(ctx context.Context, method mcp.MCPMethod, start time.Time, err error) {
	u.pool.opts.OnRequest(u.cfg.Name, string(method), outcomeOf(ctx, err), time.Since(start))
}

// outcomeOf is the outcome of a request that ended with err while ctx was
// its context: transport failures are mcp-go's *transport.Error, an error
// the upstream answered is anything else.
func outcomeOf(ctx context.Context, err error) string {
	var ce *capError
	var te *transport.Error
	switch {
	case err == nil:
		return OutcomeSuccess
	case errors.As(err, &ce):
		return OutcomeRefused
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return OutcomeTimeout
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return OutcomeCanceled
	case errors.As(err, &te):
		return OutcomeUnavailable
	}
	return OutcomeError
}

// processes reports a change of the number of stdio processes running.
func (u *Upstream) processes(delta int64) {
	u.pool.opts.OnProcesses(u.cfg.Name, int(u.procs.Add(delta)))
}

// dial opens a session in the background, bounded by the upstream's
// timeout; the session lives until it is closed, whoever asked for it.
// owner is the principal whose session it is (nil: the listing or shared
// session) and key the key of its sessions (sessionOwner); listen keeps a
// Streamable HTTP session's GET stream open.
func (u *Upstream) dial(owner *idp.Principal, key string, listen bool) *session {
	s := &session{ready: make(chan struct{}), closed: func() {}, subs: map[string]map[string]bool{}, owner: owner, ownerKey: key}
	s.lastUsed.Store(time.Now().UnixNano())
	go func() {
		defer close(s.ready)
		s.c, s.err = u.connect(owner, key, listen)
		if s.c != nil && len(u.cfg.Command) > 0 {
			u.processes(1)
			s.closed = func() { u.processes(-1) }
		}
	}()
	return s
}

// connect starts the process or opens the HTTP session, and initializes it
// (MCP lifecycle, "Initialization"), with the classic handshake every
// current server speaks.
func (u *Upstream) connect(owner *idp.Principal, key string, listen bool) (*client.Client, error) {
	var t transport.Interface
	if u.cfg.URL != "" {
		opts := []transport.StreamableHTTPCOption{transport.WithHTTPBasicClient(u.http),
			transport.WithHTTPHeaders(u.headers), transport.WithHTTPLogger(u.log)}
		if listen {
			// The listing session keeps the GET stream open, on which an
			// upstream sends notifications/tools/list_changed outside any
			// request (MCP Streamable HTTP, "Listening for Messages from the
			// Server"). A per-principal session gets it only within a
			// call's answer: one stream per upstream, not per principal,
			// but for a principal's subscriptions (subscribe.go).
			// (Deprecated for the 2026-07-28 core, which toolgate's
			// sessions do not speak: see WithLegacyProtocolOnly below.)
			opts = append(opts, transport.WithContinuousListening())
		}
		if u.cfg.Auth.Type == "assertion" {
			opts = append(opts, transport.WithHTTPHeaderFunc(u.assertionHeader(owner)))
		}
		h, err := transport.NewStreamableHTTP(u.cfg.URL, opts...)
		if err != nil {
			return nil, err
		}
		t = h
	} else {
		p, err := newStdio(u.cfg.Command, u.environ(), u.cfg.MaxResultBytes, u.log)
		if err != nil {
			return nil, transport.NewError(err)
		}
		t = p
	}
	// The handshake, not server/discover: a per_principal session is a
	// protocol session, which the stateless 2026-07-28 core has not.
	c := client.NewClient(t, client.WithLegacyProtocolOnly())
	c.OnNotification(u.relayProgress(c))
	// Any session's notifications/tools/list_changed (or prompts', or
	// resources') means what is served may be stale: list again now (MCP
	// server/tools, server/prompts and server/resources, "List Changed
	// Notification"). A resource's update goes to the gate (subscribe.go).
	principal := ""
	if owner != nil && u.cfg.Sessions != "shared" {
		principal = key
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case string(mcp.MethodNotificationToolsListChanged), string(mcp.MethodNotificationPromptsListChanged),
			string(mcp.MethodNotificationResourcesListChanged):
			u.askRefresh()
		case string(mcp.MethodNotificationResourceUpdated):
			u.pool.opts.OnResourceUpdated(u.cfg.Name, principal, n.Params.AdditionalFields)
		}
	})
	ctx, cancel := context.WithTimeout(u.pool.ctx, u.cfg.Timeout)
	defer cancel()
	start := time.Now()
	if err := c.Start(u.pool.ctx); err != nil {
		// The process did not start: an initialize not delivered.
		err = transport.NewError(err)
		u.observe(ctx, mcp.MethodInitialize, start, err)
		return nil, err
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "toolgate", Version: u.pool.opts.Version}
	_, err := c.Initialize(ctx, req)
	u.observe(ctx, mcp.MethodInitialize, start, err)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	return c, nil
}

// environ is a stdio server's whole environment: its env, and PATH and HOME
// unless env sets them. toolgate's own variables (its secrets among them)
// are not inherited.
func (u *Upstream) environ() []string {
	env := make([]string, 0, len(u.cfg.Env)+2)
	for _, k := range []string{"PATH", "HOME"} {
		if _, ok := u.cfg.Env[k]; !ok {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	for k, v := range u.cfg.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// askRefresh asks keepCurrent to list the tools again; asks made while one
// is pending are one.
func (u *Upstream) askRefresh() {
	select {
	case u.refresh <- struct{}{}:
	default:
	}
}
