package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/toolgate/toolgate/idp"
)

// residual is what OPA's partial evaluation of the call query, with
// input.arguments unknown, found of the calls of one tool by one principal
// (a toolKey): either the decision is the same for every argument value
// (free), or, when query is set, the residual compiled on its own, which
// decides from the arguments alone. Neither: a full evaluation per
// argument value.
type residual struct {
	free  bool
	query *rego.PreparedEvalQuery
}

// verdict is what compiled.verdicts keeps of a residual: the kind alone,
// since a compiled residual is large (compiled.residualQueries).
type verdict uint8

const (
	verdictFull verdict = iota // evaluate the policy in full
	verdictFree
	verdictResidual
)

// residualQueriesMax bounds each revision's compiled residuals. One is an
// OPA compiler of its own, about 100 KB: the cap holds them to about
// 25 MB, against about one per combination of grants and tool with
// argument rules in use.
const residualQueriesMax = 256

// decisionVar is the variable the partial query binds the decision
// document to (compile.go), so that each residual query names it.
const decisionVar = "toolgate_decision"

// residualOf returns what partial evaluation says of the calls of tool by
// p, asking it on the first call of each toolKey (and again when its
// compiled residual was evicted). In doubt (an error, a residual that
// reads the input beyond the arguments, or a document the policy holds)
// there is no residual query, which costs speed, never correctness.
func (e *Engine) residualOf(ctx context.Context, c *compiled, tk [sha256.Size]byte, p *idp.Principal, tool string) residual {
	if c.partial == nil {
		return residual{}
	}
	if v, ok := c.verdicts.Get(tk); ok {
		switch v {
		case verdictFree:
			return residual{free: true}
		case verdictResidual:
			if q, ok := c.residualQueries.Get(tk); ok {
				return residual{query: q}
			}
		default:
			return residual{}
		}
	}
	items, err := e.in.items(p, ActionCall, tool)
	if err != nil {
		return residual{}
	}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	in := ast.NewObject(items...).Copy() // the catalog's terms are shared with evaluations
	// One partial evaluation at a time; a call that finds one running does
	// not queue behind it (a burst of new principals would wait for each
	// other's): it is evaluated in full, and asks again next time.
	if !c.partialMu.TryLock() {
		return residual{}
	}
	pq, err := c.partial.Partial(ctx, rego.EvalParsedInput(in))
	if err == nil {
		// Later partial evaluations write into the terms this one shares
		// with the compiled rules (compile.go): the residual is copied
		// before anything else reads it.
		pq = copyPartial(pq)
	}
	c.partialMu.Unlock()
	if err != nil && ctx.Err() != nil {
		return residual{} // ask again next time
	}
	var r residual
	v := verdictFull
	switch {
	case err != nil:
	case residualIsConstant(pq):
		r.free, v = true, verdictFree
	default:
		// Compiled out of the lock: the copy is this call's own.
		if r.query = compileResidual(pq); r.query != nil {
			v = verdictResidual
			c.residualQueries.Add(tk, r.query)
		}
	}
	c.verdicts.Add(tk, v)
	return r
}

func copyPartial(pq *rego.PartialQueries) *rego.PartialQueries {
	out := &rego.PartialQueries{Queries: make([]ast.Body, len(pq.Queries)), Support: make([]*ast.Module, len(pq.Support))}
	for i, q := range pq.Queries {
		out.Queries[i] = q.Copy()
	}
	for i, m := range pq.Support {
		out.Support[i] = m.Copy()
	}
	return out
}

// residualIsConstant reports whether a residual reads neither the input
// nor any document but the support rules partial evaluation wrote
// (under residualNamespace).
func residualIsConstant(pq *rego.PartialQueries) bool {
	support := ast.DefaultRootRef.Append(ast.StringTerm(residualNamespace))
	constant := true
	check := func(x any) {
		ast.WalkTerms(x, func(t *ast.Term) bool {
			switch v := t.Value.(type) {
			case ast.Var: // the head of every reference into the input
				if v.Equal(ast.InputRootDocument.Value) {
					constant = false
				}
			case ast.Ref:
				if v.HasPrefix(ast.DefaultRootRef) && !v.HasPrefix(support) {
					constant = false
				}
			}
			return !constant
		})
	}
	for _, q := range pq.Queries {
		check(q)
	}
	for _, m := range pq.Support {
		for _, r := range m.Rules {
			check(r)
		}
	}
	return constant
}

// compileResidual compiles a residual that reads the arguments into a
// query of its own, which binds decisionVar to the decision. It does so
// only for a residual of one query that reads nothing but input.arguments
// and its support rules, and has no `with`, so that evaluating it with an
// input of the arguments alone, on no data, is evaluating the policy;
// otherwise nil. (The call query's document is one complete rule: its
// residual is one query, but for policies partial evaluation splits.)
func compileResidual(pq *rego.PartialQueries) *rego.PreparedEvalQuery {
	if len(pq.Queries) != 1 || !readsOnly(pq, ast.InputRootRef.Append(ast.StringTerm("arguments"))) {
		return nil
	}
	return prepareResidual(pq.Queries[0], pq.Support)
}

// prepareResidual compiles a residual's query with its support modules,
// and more of toolgate's own, on their own and on no data; nil when they
// do not compile.
func prepareResidual(query ast.Body, support []*ast.Module, more ...*ast.Module) *rego.PreparedEvalQuery {
	modules := make(map[string]*ast.Module, len(support)+len(more))
	for i, m := range append(slices.Clone(support), more...) {
		modules[fmt.Sprintf("%s/%d.rego", residualNamespace, i)] = m
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(modules); compiler.Failed() {
		return nil
	}
	q, err := rego.New(
		rego.ParsedQuery(query),
		rego.Compiler(compiler),
		rego.Store(inmem.New()),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil
	}
	return &q
}

// readsOnly reports whether every reference of the residual into the
// input is under input (input.arguments of a call, input.principal of a
// list), every one into data is to a support rule, and no expression has a
// `with`.
func readsOnly(pq *rego.PartialQueries, input ast.Ref) bool {
	support := ast.DefaultRootRef.Append(ast.StringTerm(residualNamespace))
	ok := true
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.With:
			ok = false
		case ast.Var: // the input or data as a whole value
			if v.Equal(ast.InputRootDocument.Value) || v.Equal(ast.DefaultRootDocument.Value) {
				ok = false
			}
		case ast.Ref:
			switch {
			case v.HasPrefix(input), v.HasPrefix(support):
			case v[0].Equal(ast.InputRootDocument), v[0].Equal(ast.DefaultRootDocument):
				ok = false
			default:
				return !ok // a local variable's ref: its keys are walked
			}
			for _, k := range v[1:] { // keys may read more
				vis.Walk(k)
			}
			return true
		}
		return !ok
	})
	for _, q := range pq.Queries {
		vis.Walk(q)
	}
	for _, m := range pq.Support {
		for _, r := range m.Rules {
			vis.Walk(r)
		}
	}
	return ok
}

// evaluateResidual decides a call from a residual query and the arguments.
// The caller evaluates the call in full when ok is false: an evaluation
// error or anything but one decision, which a faithful residual does not
// give, is taken for doubt about the residual, not for the decision.
func (e *Engine) evaluateResidual(ctx context.Context, c *compiled, id string, q *rego.PreparedEvalQuery, args []byte) (d Decision, ok bool) {
	arguments, err := argumentsValue(args)
	if err != nil {
		return failed(id, c, err), true // as a full evaluation's input would
	}
	in := ast.NewObject(ast.Item(ast.InternedTerm("arguments"), ast.NewTerm(arguments)))
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	rs, err := q.Eval(ctx, e.evalOptions(in)...)
	if err != nil && ctx.Err() != nil {
		return failed(id, c, err), true
	}
	if err != nil || len(rs) != 1 {
		return Decision{}, false
	}
	d = Decision{ID: id, Revision: c.revision}
	if err := d.read(rs[0].Bindings[decisionVar]); err != nil {
		return Decision{}, false
	}
	return d.settle(), true
}
