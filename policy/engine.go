package policy

import (
	"crypto/sha256"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Source is where policies come from: a directory, a file system (the
// default policy compiled into the binary), or an OPA bundle.
type Source struct {
	Dir    string
	FS     fs.FS
	Bundle *bundle.Bundle
	// Name names a bundle's origin (its URL) in logs.
	Name string
}

func (s Source) String() string {
	switch {
	case s.Bundle != nil:
		name := "bundle " + s.Name
		if r := s.Bundle.Manifest.Revision; r != "" {
			name += " (revision " + r + ")"
		}
		return name
	case s.FS != nil:
		return "embedded default policy"
	}
	return s.Dir
}

// Options configure an Engine.
type Options struct {
	Logger *slog.Logger
	// OnSwap is called after a new revision is swapped in.
	OnSwap func(revision string)
	// OnReload is told the outcome of every reload attempt.
	OnReload func(err error)
	// EvalTimeout bounds one evaluation; past it the decision is an
	// error, so a denial. Zero means no bound but the caller's context.
	EvalTimeout time.Duration
	// CacheSize bounds each revision's caches of visible sets and call
	// decisions; 0 takes the default (10000), a negative value turns them
	// off. A policy that calls a non-deterministic built-in (time.now_ns,
	// http.send, rand.intn, ...) caches nothing, whatever this says.
	CacheSize int
	// DynamicCatalog says the catalog changes while toolgate serves (the
	// gateway's upstream tools, SetCatalog): a tool_rules entry naming a
	// tool the catalog lacks is then a warning, not an error, since its
	// upstream may be down or not listed yet.
	DynamicCatalog bool
}

// Engine holds the compiled policy and swaps it atomically on reload, so an
// evaluation never sees a half-updated policy.
type Engine struct {
	src      Source
	opts     Options
	toolList []Tool       // the catalog as given
	in       catalogInput // the catalog as policy input, parsed once
	extras   extrasInput  // the prompts and resources as policy input (actions.go)
	cur      atomic.Pointer[compiled]
	mu       sync.Mutex // serialises reloads
	lastErr  atomic.Pointer[error]
	// now, when set, is OPA's clock (time.now_ns) for every evaluation:
	// tests move it; nil is the wall clock.
	now func() time.Time
}

// compiled is one revision of the policy with its prepared queries and its
// caches, which a reload drops with it.
type compiled struct {
	revision string
	loaded   time.Time
	list     rego.PreparedEvalQuery
	call     rego.PreparedEvalQuery
	// callQuery is the wrapper document call answers (setOfStrings).
	callQuery string
	// listPrincipal and callPrincipal are what of the principal the list
	// and the call queries read: the principal's part of the keys of the
	// caches below (visible, and calls with residuals).
	listPrincipal principalKey
	callPrincipal principalKey
	visible       *lru.Cache[[sha256.Size]byte, map[string]bool] // listKey -> visible set
	calls         *lru.Cache[[sha256.Size]byte, Decision]        // callKey or toolKey -> decision
	// partial is the call query with input.arguments unknown, verdicts
	// what it found per principal and tool (toolKey -> the decision holds
	// for every argument value, or has a residual that decides from the
	// arguments, or neither), and residualQueries those residuals,
	// compiled (residual.go); all nil when nothing is cached.
	partial         *rego.PreparedPartialQuery
	partialMu       *sync.Mutex // partial evaluations run one at a time (compile.go)
	verdicts        *lru.Cache[[sha256.Size]byte, verdict]
	residualQueries *lru.Cache[[sha256.Size]byte, *rego.PreparedEvalQuery]
	// listPartial is visible_tools[name] with input.principal unknown, and
	// listFast the grouped residual it gives for the catalog in force
	// (listresidual.go); nil when nothing is cached or visible_tools is not
	// known to be a set of strings.
	listPartial func() (*rego.PreparedPartialQuery, error) // prepared once, on first use
	listMu      *sync.Mutex                                // the list's partial evaluations run one at a time
	listFast    *listFast
	// cacheable is false when caching is off or the policy calls a
	// non-deterministic built-in: then no cache is made (newCaches).
	cacheable bool
	// act are the queries of prompts and resources (actions.go).
	act *actionQueries
}

// New compiles the policy of src. An error names the file and line that do
// not compile.
func New(src Source, catalog []Tool, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OnSwap == nil {
		opts.OnSwap = func(string) {}
	}
	if opts.OnReload == nil {
		opts.OnReload = func(error) {}
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 10000
	}
	in, err := newCatalogInput(catalog)
	if err != nil {
		return nil, err
	}
	e := &Engine{src: src, opts: opts, toolList: catalog, in: in}
	c, err := e.compile(src)
	if err != nil {
		return nil, err
	}
	e.cur.Store(c)
	e.startListResidual(c)
	return e, nil
}

// SetCatalog puts a new catalog in force: the gateway's upstream tools
// changed. The policy stays; its caches, whose answers were made for the
// old catalog, are dropped.
func (e *Engine) SetCatalog(catalog []Tool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	// The catalog first, then the caches: an evaluation that finds the new
	// caches reads the new catalog.
	if err := e.in.set(catalog); err != nil {
		return err
	}
	e.toolList = catalog
	c := *e.cur.Load()
	e.newCaches(&c)
	e.cur.Store(&c)
	e.startListResidual(&c)
	return nil
}

// Revision is the content hash of the policy in force.
func (e *Engine) Revision() string { return e.cur.Load().revision }

// LoadedAt is when the policy in force was compiled.
func (e *Engine) LoadedAt() time.Time { return e.cur.Load().loaded }

// LastError is why the latest reload failed, or nil when it succeeded.
func (e *Engine) LastError() error {
	if p := e.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Reload compiles the source again and swaps it in. When it does not compile,
// the policy in force keeps serving and the error is returned.
func (e *Engine) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.swap(e.src)
}

// SetBundle compiles a newly downloaded bundle and swaps it in; when it
// does not compile, the policy in force keeps serving, as with Reload.
func (e *Engine) SetBundle(b *bundle.Bundle, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.swap(Source{Bundle: b, Name: name})
}

// BundleFailed records a bundle download that failed: the policy in force
// keeps serving, and the failure shows like a failed reload.
func (e *Engine) BundleFailed(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failed(err)
}

// ClearFailure forgets the last failure: the source is sound again and
// holds the policy in force.
func (e *Engine) ClearFailure() {
	if e.lastErr.Swap(nil) != nil {
		e.opts.Logger.Info("policy source recovered", "source", e.src.String(), "revision", e.Revision())
	}
}

// swap compiles src and puts it in force; the caller holds e.mu.
func (e *Engine) swap(src Source) error {
	c, err := e.compile(src)
	if err != nil {
		e.failed(err)
		return err
	}
	e.opts.OnReload(nil)
	e.lastErr.Store(nil)
	e.src = src
	old := e.cur.Swap(c)
	e.startListResidual(c)
	if old.revision != c.revision {
		e.opts.Logger.Info("policy reloaded", "source", src.String(), "revision", c.revision, "previous", old.revision)
		e.opts.OnSwap(c.revision)
	}
	return nil
}

func (e *Engine) failed(err error) {
	e.opts.OnReload(err)
	e.lastErr.Store(&err)
	e.opts.Logger.Error("policy reload failed; the last good policy keeps serving",
		"source", e.src.String(), "revision", e.Revision(), "error", err)
}
