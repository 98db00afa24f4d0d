package policy

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/types"
)

//go:embed wrapper.rego
var wrapperModule string

//go:embed wrapper_by_name.rego
var byNameModule string

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

// listQuery is the wrapper document a list answers (wrapper.rego).
const listQuery = "data.toolgate.internal.visible"

func (e *Engine) compile(src Source) (*compiled, error) {
	res, err := load(src)
	if err != nil {
		return nil, err
	}
	// The operator's modules alone first, through the same check as
	// `toolgate policy check`, so that every error names the operator's file
	// and line; then with the wrapper.
	checked, findings := check(src, res, e.toolList, e.opts.DynamicCatalog)
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
	if err := addActionsModule(modules); err != nil {
		return nil, err
	}
	callQuery := "data.toolgate.internal.call"
	if setOfStrings(checked.TypeEnv.GetByRef(ast.MustParseRef("data.mcp.authz.visible_tools"))) {
		if modules[byNameFile], err = ast.ParseModule(byNameFile, byNameModule); err != nil {
			return nil, err
		}
		callQuery = "data.toolgate.internal.call_by_name"
	}
	// Partial evaluation writes into the compiled rules and the store's
	// values it reads (OPA 1.22's copy propagation plugs terms in place), so
	// each partial query (the call's, the list's) gets its own compiled copy
	// of the modules, made from these, and its own store, and runs one at a
	// time (compiled.partialMu, compiled.listMu); evaluations never share
	// anything with them, nor the list's, made in the background, with the
	// call's.
	pristine := make(map[string]*ast.Module, len(modules))
	for name, m := range modules {
		pristine[name] = m.Copy()
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
	c := &compiled{revision: revision(res), loaded: time.Now(), callQuery: callQuery,
		listPrincipal: readPrincipal(compiler, listQuery), callPrincipal: readPrincipal(compiler, callQuery)}
	if c.list, err = prepare(listQuery); err != nil {
		return nil, err
	}
	if c.call, err = prepare(callQuery); err != nil {
		return nil, err
	}
	if c.act, err = prepareActions(prepare); err != nil {
		return nil, err
	}
	// A policy that calls a non-deterministic built-in may answer the same
	// question differently next time: nothing of it is cached.
	c.cacheable = e.opts.CacheSize > 0 && len(nondeterministic(checked)) == 0
	if c.cacheable && !hasPackageUnder(modules, residualNamespace) {
		// nil, and no error, when the copy does not compile: no fast path.
		preparePartial := func(query, unknown string) (*rego.PreparedPartialQuery, error) {
			copies := make(map[string]*ast.Module, len(pristine))
			for name, m := range pristine {
				copies[name] = m.Copy()
			}
			compiler := ast.NewCompiler().WithSchemas(inputSchema)
			if compiler.Compile(copies); compiler.Failed() {
				return nil, nil
			}
			q, err := rego.New(
				rego.Query(query),
				rego.Compiler(compiler),
				rego.Store(inmem.NewFromObjectWithOpts(res.Documents, inmem.OptReturnASTValuesOnRead(true))),
				rego.StrictBuiltinErrors(true),
				rego.Unknowns([]string{unknown}),
				rego.PartialNamespace(residualNamespace),
			).PrepareForPartial(context.Background())
			if err != nil {
				return nil, err
			}
			return &q, nil
		}
		// The decision bound to a variable, so that a residual query names
		// it (residual.go).
		if c.partial, err = preparePartial(decisionVar+" = "+callQuery, "input.arguments"); err != nil {
			return nil, err
		}
		c.partialMu = new(sync.Mutex)
		if callQuery == "data.toolgate.internal.call_by_name" { // visible_tools is a set of strings
			// Prepared by the first list residual made, in the background:
			// a compile of the policy that start-up and reloads need not wait for.
			c.listPartial = sync.OnceValues(func() (*rego.PreparedPartialQuery, error) {
				return preparePartial("data.mcp.authz.visible_tools["+listNameVar+"]", "input.principal")
			})
			c.listMu = new(sync.Mutex)
		}
	}
	e.newCaches(c)
	return c, nil
}

// newCaches gives c empty caches: a new revision, or a new catalog (which
// every cached answer was computed on). None when c is not cacheable.
func (e *Engine) newCaches(c *compiled) {
	c.visible, c.calls, c.verdicts, c.residualQueries, c.listFast = nil, nil, nil, nil, nil
	c.act = c.act.fresh(e.opts.CacheSize, c.cacheable)
	if !c.cacheable {
		return
	}
	c.visible, _ = lru.New[[sha256.Size]byte, map[string]bool](e.opts.CacheSize)
	c.calls, _ = lru.New[[sha256.Size]byte, Decision](e.opts.CacheSize)
	if c.partial != nil {
		c.verdicts, _ = lru.New[[sha256.Size]byte, verdict](e.opts.CacheSize)
		c.residualQueries, _ = lru.New[[sha256.Size]byte, *rego.PreparedEvalQuery](min(e.opts.CacheSize, residualQueriesMax))
	}
	if c.listPartial != nil {
		c.listFast = &listFast{catalog: e.in.cur.Load(), done: make(chan struct{})}
	}
}

// residualNamespace is where partial evaluation puts the rules it could
// not inline (rego.PartialNamespace). A policy with a package of its own
// there would make a residual's references ambiguous: it gets no fast path.
const residualNamespace = "toolgate_residual"

func hasPackageUnder(modules map[string]*ast.Module, namespace string) bool {
	root := ast.DefaultRootRef.Append(ast.StringTerm(namespace))
	for _, m := range modules {
		if m.Package.Path.HasPrefix(root) {
			return true
		}
	}
	return false
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
	"limits":          "a set of objects",
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
	case "limits":
		set, ok := t.(*types.Set)
		return ok && mayBeObject(set.Of())
	default: // a set of strings
		set, ok := t.(*types.Set)
		return ok && (types.Contains(set.Of(), types.S) || types.Compare(set.Of(), types.NewAny()) == 0)
	}
}

// mayBeObject reports whether a value of type t can be an object.
func mayBeObject(t types.Type) bool {
	switch t := t.(type) {
	case types.Any:
		if len(t) == 0 {
			return true
		}
		return slices.ContainsFunc(t, mayBeObject)
	case *types.Object:
		return true
	}
	return false
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
