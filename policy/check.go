package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/toolgate/toolgate/idp"
)

// Finding is one problem `toolgate policy check` reports, at a file and line.
type Finding struct {
	File     string
	Line     int
	Severity string // "error" or "warning"
	Message  string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Severity, f.Message)
}

// Findings are the problems of one policy; as an error, one per line.
type Findings []Finding

func (fs Findings) Error() string {
	lines := make([]string, len(fs))
	for i, f := range fs {
		lines[i] = f.String()
	}
	return strings.Join(lines, "\n")
}

// Errors are the findings of severity error.
func (fs Findings) Errors() Findings {
	return slices.DeleteFunc(slices.Clone(fs), func(f Finding) bool { return f.Severity != "error" })
}

// Check compiles the policy of src the way the server does before it swaps
// a policy in (OPA's strict mode, the input closed to the contract's
// fields, the contract rules' types) and adds toolgate's lints: a tool named
// in data.tool_rules that the catalog lacks is an error; a catalog tool that
// no rule makes visible is a warning.
//
// upstreams, when not nil, are the names of the configured upstream
// servers: their tools are not in catalog (they are known only once
// listed), so a tool_rules name the catalog lacks is then a warning, and a
// data.server_rules key that names no configured upstream is an error (a
// typo would leave that upstream's tools without their rule).
func Check(src Source, catalog []Tool, upstreams []string) (Findings, error) {
	res, err := load(src)
	if err != nil {
		return nil, err
	}
	_, findings := check(src, res, catalog, upstreams != nil)
	if upstreams != nil {
		findings = append(findings, lintServerRules(src, res.Documents, upstreams)...)
	}
	return findings, nil
}

func check(src Source, res *loader.Result, catalog []Tool, dynamic bool) (*ast.Compiler, Findings) {
	modules := res.ParsedModules()
	if !hasPackage(modules, "data.mcp.authz") {
		return nil, Findings{{File: src.String(), Severity: "error", Message: "no module declares package mcp.authz"}}
	}
	c := ast.NewCompiler().WithStrict(true).WithSchemas(inputSchema)
	if c.Compile(modules); c.Failed() {
		return nil, astFindings(c.Errors)
	}
	var out Findings
	if err := checkContractTypes(c); err != nil {
		var errs ast.Errors
		if errors.As(err, &errs) {
			out = append(out, astFindings(errs)...)
		}
	}
	out = append(out, nondeterministic(c)...)
	out = append(out, lintToolRules(src, res.Documents, catalog, dynamic)...)
	out = append(out, actionRuleErrors(src, c, res.Documents)...)
	if len(out.Errors()) == 0 {
		out = append(out, lintInvisible(c, res, catalog)...)
	}
	return c, out
}

func astFindings(errs ast.Errors) Findings {
	out := make(Findings, 0, len(errs))
	for _, e := range errs {
		f := Finding{Severity: "error", Message: e.Code + ": " + e.Message}
		if e.Location != nil {
			f.File, f.Line = e.Location.File, e.Location.Row
		}
		if e.Details != nil {
			// Keep the type checker's have/want hints; the source excerpt
			// and its caret are the file and line already named.
			var hints []string
			for _, l := range e.Details.Lines() {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "have") || strings.HasPrefix(l, "want") {
					hints = append(hints, l)
				}
			}
			if len(hints) > 0 {
				f.Message += " (" + strings.Join(hints, "; ") + ")"
			}
		}
		out = append(out, f)
	}
	return out
}

// nondeterministic finds the calls of built-ins OPA marks
// non-deterministic (ast.Builtin.Nondeterministic: the clock, the network,
// randomness, the runtime), anywhere in the compiled modules, functions
// included: such a call can answer the same input differently each time,
// so a revision that makes one caches no decision and no visible set.
// Calls nested in terms are found too (the compiler lifts most of them into
// expressions of their own, at the same line).
func nondeterministic(c *ast.Compiler) Findings {
	var out Findings
	seen := map[Finding]bool{}
	found := func(op ast.Ref, loc *ast.Location) {
		b := ast.BuiltinMap[op.String()]
		if b == nil || !b.Nondeterministic {
			return
		}
		f := Finding{Severity: "warning", Message: fmt.Sprintf(
			"%s is non-deterministic: decisions of this policy are not cached, every call and tools/list evaluates it", b.Name)}
		if loc != nil {
			f.File, f.Line = loc.File, loc.Row
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		ast.NewGenericVisitor(func(x any) bool {
			switch x := x.(type) {
			case *ast.Expr:
				if x.IsCall() {
					found(x.Operator(), x.Location)
				}
			case *ast.Term:
				if call, ok := x.Value.(ast.Call); ok && len(call) > 0 {
					if op, ok := call[0].Value.(ast.Ref); ok {
						found(op, x.Location)
					}
				}
			}
			return false
		}).Walk(c.Modules[name])
	}
	return out
}

// lintToolRules checks the tool names of data.tool_rules (the default
// policy's layout) against the catalog, at their line in the data file when
// there is one. With a dynamic catalog (the gateway's) an unknown name is
// only a warning: its upstream may be down, or not listed yet.
func lintToolRules(src Source, data map[string]any, catalog []Tool, dynamic bool) Findings {
	rules, _ := data["tool_rules"].(map[string]any)
	known := map[string]bool{}
	for _, t := range catalog {
		known[t.Name] = true
	}
	names := make([]string, 0, len(rules))
	for n := range rules {
		if !known[n] {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out Findings
	for _, n := range names {
		f := dataFinding(src, n, fmt.Sprintf("tool_rules names %q, which is not a tool of the catalog (%s)", n, strings.Join(catalogNames(catalog), ", ")))
		if dynamic {
			f.Severity = "warning"
		}
		out = append(out, f)
	}
	return out
}

// lintServerRules finds the data.server_rules keys that name no upstream.
func lintServerRules(src Source, data map[string]any, upstreams []string) Findings {
	rules, _ := data["server_rules"].(map[string]any)
	var out Findings
	for _, n := range slices.Sorted(maps.Keys(rules)) {
		if slices.Contains(upstreams, n) {
			continue
		}
		configured := strings.Join(upstreams, ", ")
		if configured == "" {
			configured = "none"
		}
		out = append(out, dataFinding(src, n, fmt.Sprintf("server_rules names %q, which is not a configured upstream (%s)", n, configured)))
	}
	return out
}

// dataFinding is an error about name in the policy's data, at the first
// line of its data file that holds it.
func dataFinding(src Source, name, msg string) Finding {
	f := Finding{File: src.String() + " data", Line: 1, Severity: "error", Message: msg}
	for _, file := range []string{"data.json", "data.yaml", "data.yml"} {
		if b, path, err := readSourceFile(src, file); err == nil && strings.Contains(string(b), name) {
			f.File, f.Line = path, lineOf(b, name)
			break
		}
	}
	return f
}

// lintInvisible warns of catalog tools that no principal can see: it asks
// visible_tools for principals holding every permission, role and scope the
// policy names anywhere (in its data or its string literals), of each
// provider, in each organisation the policy names, until every tool showed.
func lintInvisible(c *ast.Compiler, res *loader.Result, catalog []Tool) Findings {
	vocabulary := map[string]bool{}
	collectStrings(res.Documents, vocabulary)
	for _, m := range c.Modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if s, ok := t.Value.(ast.String); ok {
				vocabulary[string(s)] = true
			}
			return false
		})
	}
	words := make([]string, 0, len(vocabulary))
	for w := range vocabulary {
		words = append(words, w)
	}
	slices.Sort(words)
	cat, err := newCatalogInput(catalog)
	if err != nil {
		return nil
	}
	query, err := rego.New(rego.Query("data.mcp.authz.visible_tools"), rego.Compiler(c),
		rego.Store(inmem.NewFromObject(res.Documents))).PrepareForEval(context.Background())
	if err != nil {
		return nil
	}
	// The lint runs before every load and reload: a slow policy must not
	// hold them up.
	ctx, cancel := context.WithTimeout(context.Background(), lintBudget)
	defer cancel()
	file, line := visibleToolsAt(c)
	visible := map[string]bool{}
	orgs := append([]string{""}, words...)
	const budget = 256 // evaluations; a policy is rarely that picky
	tried := 0
	for _, org := range orgs {
		for _, provider := range idp.Providers {
			if len(visible) == len(catalog) || tried == budget {
				break
			}
			tried++
			p := &idp.Principal{Sub: "toolgate-policy-check", Provider: provider, OrgID: org,
				Scopes: words, Permissions: words, Roles: words, Claims: map[string]any{}}
			in, err := cat.input(p, ActionList, "", nil)
			if err != nil {
				return nil
			}
			rs, err := query.Eval(ctx, rego.EvalParsedInput(in))
			if ctx.Err() != nil {
				return Findings{{File: file, Line: line, Severity: "warning", Message: fmt.Sprintf(
					"visible_tools took over %s for sample principals; the lint of invisible tools was skipped", lintBudget)}}
			}
			if err != nil || len(rs) != 1 {
				continue
			}
			names, _ := stringSet(rs[0].Expressions[0].Value, "visible_tools")
			for _, n := range names {
				visible[n] = true
			}
		}
	}
	var out Findings
	for _, t := range catalog {
		if !visible[t.Name] {
			out = append(out, Finding{File: file, Line: line, Severity: "warning",
				Message: fmt.Sprintf("no rule makes tool %q visible, even to a principal holding every permission, role and scope the policy names", t.Name)})
		}
	}
	return out
}

// lintBudget bounds the evaluations of the invisible-tool lint.
const lintBudget = time.Second

// visibleToolsAt is where the operator's visible_tools is defined.
func visibleToolsAt(c *ast.Compiler) (string, int) {
	if rules := c.GetRulesExact(ast.MustParseRef("data.mcp.authz.visible_tools")); len(rules) > 0 {
		return rules[0].Location.File, rules[0].Location.Row
	}
	return "", 0
}

func collectStrings(v any, into map[string]bool) {
	switch v := v.(type) {
	case string:
		into[v] = true
	case map[string]any:
		for k, x := range v {
			into[k] = true
			collectStrings(x, into)
		}
	case []any:
		for _, x := range v {
			collectStrings(x, into)
		}
	}
}

func catalogNames(catalog []Tool) []string {
	out := make([]string, 0, len(catalog))
	for _, t := range catalog {
		out = append(out, t.Name)
	}
	return out
}

// readSourceFile reads a file at the root of the policy source.
func readSourceFile(src Source, name string) ([]byte, string, error) {
	if src.Bundle != nil {
		return nil, "", fs.ErrNotExist
	}
	if src.FS != nil {
		b, err := fs.ReadFile(src.FS, name)
		return b, name, err
	}
	path := filepath.Join(src.Dir, name)
	b, err := os.ReadFile(path)
	return b, path, err
}

// lineOf is the line of the first occurrence of the quoted key, else 1.
func lineOf(b []byte, key string) int {
	text := string(b)
	for _, needle := range []string{`"` + key + `"`, key + ":"} {
		if i := strings.Index(text, needle); i >= 0 {
			return strings.Count(text[:i], "\n") + 1
		}
	}
	return 1
}

func hasPackage(modules map[string]*ast.Module, pkg string) bool {
	for _, m := range modules {
		if m.Package.Path.String() == pkg {
			return true
		}
	}
	return false
}
