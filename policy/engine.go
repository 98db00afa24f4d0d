// Package policy asks the operator's Rego policies (package mcp.authz, run by
// embedded OPA) which tools a principal may see and call. A decision is a
// value with a reason, never a bare bool; any evaluation error denies.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/toolgate/toolgate/idp"
)

//go:embed wrapper.rego
var wrapperModule string

//go:embed wrapper_by_name.rego
var byNameModule string

// NewID returns a new decision id: a random UUID (RFC 9562 §5.4). An id
// names a decision in the log and in the answer to the client; it is no
// secret, so its bits come from math/rand/v2 (ChaCha8, seeded by the OS,
// per thread) rather than a read from the kernel on every decision.
func NewID() string {
	var u uuid.UUID
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return u.String()
}

// ErrArgumentsInvalid is a call whose arguments are not a JSON object: the
// client's fault, denied like any failed evaluation but told apart from one.
var ErrArgumentsInvalid = errors.New("arguments must be a JSON object")

//go:embed input.schema.json
var inputSchemaJSON []byte

// inputSchema closes the input to what the contract provides, so that a
// typo such as input.principal.permision is a compile error at its line
// instead of a rule that silently matches nothing.
var inputSchema = func() *ast.SchemaSet {
	var schema any
	if err := json.Unmarshal(inputSchemaJSON, &schema); err != nil {
		panic(err)
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, schema)
	return ss
}()

// The actions of the policy contract.
const (
	ActionList = "tools/list"
	ActionCall = "tools/call"
)

// Tool is what a policy sees of one tool of the catalog.
type Tool struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Annotations map[string]any `json:"annotations"`
}

// Decision is the answer to one tools/call. One without Err had arguments
// that were empty, null or a JSON object: DecideRaw decodes them before it
// evaluates, and caches only what it evaluated (the decision log relies on
// it).
type Decision struct {
	ID             string   // unique; in the decision log and the denial the client sees
	Visible        bool     // the tool is in visible_tools
	Allowed        bool     // visible and allow is true
	Reason         string   // the policy's reason, or the gate's when it has none
	RequiredScopes []string // scopes that would permit the call (step-up), sorted
	Revision       string   // the policy revision that decided
	Err            error    // an evaluation error (the call is then denied)
}

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
	// off. Caching assumes what OPA's own caches assume: a decision depends
	// only on the input and the data (no time.now_ns, http.send, rand).
	CacheSize int
}

// Engine holds the compiled policy and swaps it atomically on reload, so an
// evaluation never sees a half-updated policy.
type Engine struct {
	src      Source
	opts     Options
	toolList []Tool       // the catalog as given
	in       catalogInput // the catalog as policy input, parsed once
	cur      atomic.Pointer[compiled]
	mu       sync.Mutex // serialises reloads
	lastErr  atomic.Pointer[error]
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
	visible   *lru.Cache[string, map[string]bool]     // principal fingerprint -> visible set
	calls     *lru.Cache[[sha256.Size]byte, Decision] // callKey -> decision
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
	return e, nil
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

// Visible evaluates visible_tools once for the whole catalog and returns
// the names visible to p. The answer is shared: callers must not change it.
// On an evaluation error nothing is visible.
func (e *Engine) Visible(ctx context.Context, p *idp.Principal) (map[string]bool, error) {
	c := e.cur.Load()
	fp := p.Fingerprint()
	if c.visible != nil {
		if v, ok := c.visible.Get(fp); ok {
			return v, nil
		}
	}
	in, err := e.in.input(p, ActionList, "", nil)
	if err != nil {
		return map[string]bool{}, err
	}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	rs, err := c.list.Eval(ctx, rego.EvalParsedInput(in))
	if err == nil && len(rs) != 1 {
		err = errors.New("visible_tools is undefined")
	}
	if err != nil {
		return map[string]bool{}, err
	}
	names, err := stringSet(rs[0].Expressions[0].Value, "visible_tools")
	if err != nil {
		return map[string]bool{}, err
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	if c.visible != nil {
		c.visible.Add(fp, out)
	}
	return out, nil
}

// Decide evaluates visibility, allow, reason and required_scopes for a call
// of the named tool in one evaluation. A call is allowed only when the tool
// is visible and allow is true (docs/policy-contract.md, "Rules the gate reads").
func (e *Engine) Decide(ctx context.Context, p *idp.Principal, tool string, args map[string]any) Decision {
	if args == nil {
		args = map[string]any{}
	}
	raw, err := json.Marshal(args) // encoding/json sorts keys: canonical
	if err != nil {
		return Decision{ID: NewID(), Revision: e.Revision(), Reason: "policy evaluation failed", Err: err}
	}
	return e.DecideRaw(ctx, p, tool, raw)
}

// DecideRaw is Decide for arguments as the request carried them (the
// JSON-RPC params.arguments): a cached decision costs no decoding at all.
// Arguments that are not a JSON object are an error, so a denial.
func (e *Engine) DecideRaw(ctx context.Context, p *idp.Principal, tool string, args []byte) Decision {
	c := e.cur.Load()
	id := NewID()
	var key [sha256.Size]byte
	if c.calls != nil {
		key = callKey(p, tool, args)
		if d, ok := c.calls.Get(key); ok {
			d.ID = id
			d.RequiredScopes = slices.Clone(d.RequiredScopes) // a value: callers may change theirs
			return d
		}
	}
	d := Decision{ID: id, Revision: c.revision}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	in, err := e.in.input(p, ActionCall, tool, args)
	var rs rego.ResultSet
	if err == nil {
		rs, err = c.call.Eval(ctx, rego.EvalParsedInput(in))
	}
	if err == nil && len(rs) != 1 {
		err = errors.New("decision is undefined")
	}
	if err == nil {
		err = d.read(rs[0].Expressions[0].Value)
	}
	if err != nil {
		// Not cached: a cancelled or timed-out evaluation says nothing of
		// the next one.
		return Decision{ID: id, Revision: c.revision, Reason: "policy evaluation failed", Err: err}
	}
	d.Allowed = d.Visible && d.Allowed
	if !d.Allowed && d.Reason == "" {
		d.Reason = "denied by policy"
	}
	if c.calls != nil {
		cached := d
		cached.RequiredScopes = slices.Clone(d.RequiredScopes)
		c.calls.Add(key, cached)
	}
	return d
}

// callKey names a call decision in the cache: a SHA-256 of the principal's
// fingerprint (fixed length), the tool's name with its length before it,
// and the arguments as sent, so that no two different calls share a key.
func callKey(p *idp.Principal, tool string, args []byte) [sha256.Size]byte {
	var buf [512]byte // most calls: no allocation
	b := append(buf[:0], p.Fingerprint()...)
	b = binary.AppendUvarint(b, uint64(len(tool)))
	b = append(b, tool...)
	return sha256.Sum256(append(b, args...))
}

// deadline bounds one evaluation by Options.EvalTimeout; only evaluations
// pay for the timer, cache hits do not.
func (e *Engine) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.opts.EvalTimeout > 0 {
		return context.WithTimeout(ctx, e.opts.EvalTimeout)
	}
	return ctx, func() {}
}

// Trace evaluates a decision afresh, bypassing the caches, and writes OPA's
// evaluation trace to w: of the call of tool, or of visible_tools when tool
// is empty. It is for explaining a decision, not for serving one.
func (e *Engine) Trace(ctx context.Context, p *idp.Principal, tool string, args map[string]any, w io.Writer) error {
	c := e.cur.Load()
	action, query := ActionCall, c.call
	if tool == "" {
		action, query = ActionList, c.list
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	in, err := e.in.input(p, action, tool, raw)
	if err != nil {
		return err
	}
	buf := topdown.NewBufferTracer()
	_, err = query.Eval(ctx, rego.EvalParsedInput(in), rego.EvalQueryTracer(buf))
	topdown.PrettyTraceWithLocation(w, *buf)
	return err
}

func (d *Decision) read(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("decision is %T", v)
	}
	if d.Visible, ok = m["visible"].(bool); !ok {
		return wrongType(m["visible"], "visible_tools must be a set of strings")
	}
	if d.Allowed, ok = m["allow"].(bool); !ok {
		return wrongType(m["allow"], "allow must be a boolean")
	}
	reason, ok := m["reason"].(string)
	if !ok {
		return wrongType(m["reason"], "reason must be a string")
	}
	d.Reason = reason
	scopes, err := stringSet(m["required_scopes"], "required_scopes")
	if err != nil {
		return err
	}
	d.RequiredScopes = scopes
	return nil
}

// stringSet reads a set of strings from a Rego result (sets arrive as
// arrays).
func stringSet(v any, name string) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, wrongType(v, name+" must be a set of strings")
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%s must be a set of strings", name)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// wrongType is the error for a value of the wrong type: the wrapper's own
// {"error": ...} message when it made one, else msg.
func wrongType(v any, msg string) error {
	if m, ok := v.(map[string]any); ok {
		if s, ok := m["error"].(string); ok {
			return errors.New(s)
		}
	}
	return errors.New(msg)
}

// catalogInput is the catalog as policy input (input.tools), and each
// tool's annotations (input.tool.annotations), parsed once.
type catalogInput struct {
	tools  ast.Value
	annots map[string]ast.Value
}

func newCatalogInput(catalog []Tool) (catalogInput, error) {
	c := catalogInput{annots: make(map[string]ast.Value, len(catalog))}
	list := make([]any, 0, len(catalog))
	for _, t := range catalog {
		ann := t.Annotations
		if ann == nil {
			ann = map[string]any{}
		}
		list = append(list, map[string]any{"name": t.Name, "description": t.Description, "annotations": ann})
		v, err := ast.InterfaceToValue(ann)
		if err != nil {
			return c, fmt.Errorf("tool %s: annotations: %w", t.Name, err)
		}
		c.annots[t.Name] = v
	}
	var err error
	c.tools, err = ast.InterfaceToValue(list)
	return c, err
}

// input builds the policy input as an AST value: the catalog is parsed once
// at start, the rest per evaluation.
func (c catalogInput) input(p *idp.Principal, action, tool string, args []byte) (ast.Value, error) {
	principal, err := ast.InterfaceToValue(principalInput(p))
	if err != nil {
		return nil, err
	}
	items := [][2]*ast.Term{
		ast.Item(ast.InternedTerm("principal"), ast.NewTerm(principal)),
		ast.Item(ast.InternedTerm("action"), ast.StringTerm(action)),
		ast.Item(ast.InternedTerm("tools"), ast.NewTerm(c.tools)),
	}
	if action == ActionCall {
		ann, ok := c.annots[tool]
		if !ok {
			ann = ast.NewObject()
		}
		arguments := ast.Value(ast.NewObject())
		if len(bytes.TrimSpace(args)) > 0 && string(bytes.TrimSpace(args)) != "null" {
			var v any
			if err := json.Unmarshal(args, &v); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrArgumentsInvalid, err)
			}
			if _, ok := v.(map[string]any); !ok {
				return nil, ErrArgumentsInvalid
			}
			if arguments, err = ast.InterfaceToValue(v); err != nil {
				return nil, err
			}
		}
		items = append(items,
			ast.Item(ast.InternedTerm("tool"), ast.ObjectTerm(
				ast.Item(ast.InternedTerm("name"), ast.StringTerm(tool)),
				ast.Item(ast.InternedTerm("annotations"), ast.NewTerm(ann)),
			)),
			ast.Item(ast.InternedTerm("arguments"), ast.NewTerm(arguments)),
		)
	}
	return ast.NewObject(items...), nil
}

func principalInput(p *idp.Principal) map[string]any {
	claims := p.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	return map[string]any{
		"sub":         p.Sub,
		"iss":         p.Iss,
		"client_id":   p.ClientID,
		"provider":    p.Provider,
		"org_id":      p.OrgID,
		"scopes":      orEmpty(p.Scopes),
		"permissions": orEmpty(p.Permissions),
		"roles":       orEmpty(p.Roles),
		"claims":      claims,
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// IsPolicyFile says whether a file under the policy directory is part of the
// policy: Rego modules other than tests, and JSON or YAML data.
func IsPolicyFile(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "_test.rego") {
		return false
	}
	switch filepath.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

func load(src Source) (*loader.Result, error) {
	if src.Bundle != nil {
		return fromBundle(src.Bundle), nil
	}
	fl := loader.NewFileLoader()
	root := src.Dir
	if src.FS != nil {
		fl = fl.WithFS(src.FS)
		root = "."
	}
	return fl.Filtered([]string{root}, func(_ string, info fs.FileInfo, depth int) bool {
		if info.IsDir() {
			return depth > 0 && strings.HasPrefix(info.Name(), ".")
		}
		return !IsPolicyFile(info.Name())
	})
}

// fromBundle lays a bundle out as the loader would a directory: its
// modules (tests left out) and its data.
func fromBundle(b *bundle.Bundle) *loader.Result {
	res := &loader.Result{Modules: map[string]*loader.RegoFile{}, Documents: b.Data}
	if res.Documents == nil {
		res.Documents = map[string]any{}
	}
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			continue
		}
		res.Modules[m.Path] = &loader.RegoFile{Name: m.Path, Parsed: m.Parsed, Raw: m.Raw}
	}
	return res
}

func (e *Engine) compile(src Source) (*compiled, error) {
	res, err := load(src)
	if err != nil {
		return nil, err
	}
	// The operator's modules alone first, through the same check as
	// `toolgate policy check`, so that every error names the operator's file
	// and line; then with the wrapper.
	checked, findings := check(src, res, e.toolList)
	if errs := findings.Errors(); len(errs) > 0 {
		return nil, errs
	}
	for _, f := range findings {
		e.opts.Logger.Warn("policy check", "finding", f.String())
	}
	modules := res.ParsedModules()
	wrapper, err := ast.ParseModule(wrapperFile, wrapperModule)
	if err != nil {
		return nil, err
	}
	modules[wrapperFile] = wrapper
	callQuery := "data.toolgate.internal.call"
	if setOfStrings(checked.TypeEnv.GetByRef(ast.MustParseRef("data.mcp.authz.visible_tools"))) {
		if modules[byNameFile], err = ast.ParseModule(byNameFile, byNameModule); err != nil {
			return nil, err
		}
		callQuery = "data.toolgate.internal.call_by_name"
	}
	compiler := ast.NewCompiler().WithSchemas(inputSchema)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, blameRules(compiler)
	}
	// The store keeps data as AST values, so that an evaluation reading
	// data.tool_rules does not convert it from Go values again each time.
	store := inmem.NewFromObjectWithOpts(res.Documents, inmem.OptReturnASTValuesOnRead(true))
	prepare := func(q string) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.Query(q),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StrictBuiltinErrors(true),
		).PrepareForEval(context.Background())
	}
	c := &compiled{revision: revision(res), loaded: time.Now(), callQuery: callQuery}
	if c.list, err = prepare("data.toolgate.internal.visible"); err != nil {
		return nil, err
	}
	if c.call, err = prepare(callQuery); err != nil {
		return nil, err
	}
	if e.opts.CacheSize > 0 {
		c.visible, _ = lru.New[string, map[string]bool](e.opts.CacheSize)
		c.calls, _ = lru.New[[sha256.Size]byte, Decision](e.opts.CacheSize)
	}
	return c, nil
}

const wrapperFile = "toolgate/wrapper.rego"

const byNameFile = "toolgate/wrapper_by_name.rego"

// setOfStrings reports whether t, the type of visible_tools as the policy
// check's compiler (with the input schema) knows it, is a set of strings.
// Then a call can ask visible_tools for its tool only
// (wrapper_by_name.rego), which a partial set rule answers without
// computing the whole set; any other visible_tools is computed whole and its
// type checked at evaluation, so that a wrong one denies (wrapper.rego).
func setOfStrings(t types.Type) bool {
	return t != nil && types.Compare(t, types.NewSet(types.S)) == 0
}

// contractTypes are the types the gate reads the contract's rules as.
var contractTypes = map[string]string{
	"visible_tools":   "a set of strings",
	"allow":           "a boolean",
	"reason":          "a string",
	"required_scopes": "a set of strings",
}

// checkContractTypes refuses a contract rule whose type the type checker
// already knows to be wrong (`allow := "yes"`), at the rule's own line.
// Types known only at evaluation (values from data) are checked then.
func checkContractTypes(c *ast.Compiler) error {
	var errs ast.Errors
	for _, name := range slices.Sorted(maps.Keys(contractTypes)) {
		ref := ast.MustParseRef("data.mcp.authz." + name)
		t := c.TypeEnv.GetByRef(ref)
		rules := c.GetRulesExact(ref)
		if t == nil || len(rules) == 0 || mayBe(t, name) {
			continue
		}
		errs = append(errs, ast.NewError(ast.TypeErr, rules[0].Location, "%s must be %s, not %s", name, contractTypes[name], types.Sprint(t)))
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// mayBe reports whether a value of type t can be what the contract reads
// the rule as.
func mayBe(t types.Type, rule string) bool {
	if anyOf, ok := t.(types.Any); ok {
		if len(anyOf) == 0 {
			return true // any type at all
		}
		for _, m := range anyOf {
			if mayBe(m, rule) {
				return true
			}
		}
		return false
	}
	switch rule {
	case "allow":
		return types.Compare(t, types.B) == 0
	case "reason":
		return types.Compare(t, types.S) == 0
	default: // a set of strings
		set, ok := t.(*types.Set)
		return ok && (types.Contains(set.Of(), types.S) || types.Compare(set.Of(), types.NewAny()) == 0)
	}
}

// blameRules turns the wrapper's type errors into errors at the operator's
// rule: "policy.rego:12: allow must be a boolean".
func blameRules(c *ast.Compiler) error {
	lines := strings.Split(wrapperModule, "\n")
	var errs ast.Errors
	for _, e := range c.Errors {
		if e.Location == nil || e.Location.File != wrapperFile {
			errs = append(errs, e)
			continue
		}
		rule := ""
		for row := min(e.Location.Row, len(lines)) - 1; row >= 0 && rule == ""; row-- {
			for name := range contractTypes {
				if strings.Contains(lines[row], "data.mcp.authz."+name) {
					rule = name
				}
			}
		}
		if rule == "" {
			errs = append(errs, e)
			continue
		}
		msg := fmt.Sprintf("%s must be %s", rule, contractTypes[rule])
		loc := e.Location
		if rules := c.GetRulesExact(ast.MustParseRef("data.mcp.authz." + rule)); len(rules) > 0 {
			loc = rules[0].Location
		}
		errs = append(errs, ast.NewError(ast.TypeErr, loc, "%s", msg))
	}
	return errs
}

func hasPackage(modules map[string]*ast.Module, pkg string) bool {
	for _, m := range modules {
		if m.Package.Path.String() == pkg {
			return true
		}
	}
	return false
}

// revision hashes what was loaded: every module's text and the data.
func revision(res *loader.Result) string {
	h := sha256.New()
	names := make([]string, 0, len(res.Modules))
	for n := range res.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(n), len(res.Modules[n].Raw))
		h.Write(res.Modules[n].Raw)
	}
	data, _ := json.Marshal(res.Documents)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:12]
}
