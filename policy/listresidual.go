package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/toolgate/toolgate/idp"
)

// A principal whose grants no earlier one had lists the catalog by
// evaluating visible_tools over every tool: about 20 µs a tool with the
// default policy. But which tools a principal sees depends on few things
// of it (a permission, a role), the same for many tools. So, once per
// revision and catalog, OPA's partial evaluation of
// visible_tools[toolgate_name] with input.principal unknown gives one
// query per way a name can be in the set: a condition on the principal and
// the name, a constant. Grouped by their conditions (most tools share a
// rule, so a handful of groups), the conditions become the rules of one
// small module, `groups contains <i> if <condition i>`, and a new
// principal's list is one evaluation of those rules and a union of their
// groups' names.

// listNameVar is the variable the list's partial query binds a visible
// tool's name to.
const listNameVar = "toolgate_name"

// listGroupsVar binds the numbers of the groups whose condition holds.
const listGroupsVar = "toolgate_groups"

// listPartialTimeout bounds one partial evaluation of the list, which
// runs in the background: about 0.2 s over 1000 tools.
const listPartialTimeout = 30 * time.Second

// listResidual decides the visible set from the principal alone.
type listResidual struct {
	query  *rego.PreparedEvalQuery // binds listGroupsVar
	groups [][]string              // the names of each group
}

// listFast is the list residual of one revision and catalog, made in the
// background (compiled.newCaches): none until done is closed, nor after
// when partial evaluation found no residual of this form.
type listFast struct {
	catalog *catalogData
	done    chan struct{}
	res     *listResidual // written before done is closed
}

// ready returns the residual when it was made, else nil.
func (f *listFast) ready() *listResidual {
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return f.res
	default:
		return nil
	}
}

// WaitListResidual waits, at most until ctx ends, for the list residual of
// the policy and catalog in force, and reports whether there is one: a new
// principal's tools/list is then decided from it.
func (e *Engine) WaitListResidual(ctx context.Context) bool {
	f := e.cur.Load().listFast
	if f == nil {
		return false
	}
	select {
	case <-f.done:
		return f.res != nil
	case <-ctx.Done():
		return false
	}
}

// startListResidual makes c's list residual in the background; c is in
// force.
func (e *Engine) startListResidual(c *compiled) {
	if c.listFast != nil {
		go e.makeListResidual(c.listPartial, c.listMu, c.listFast)
	}
}

// makeListResidual fills f for its catalog: partial evaluation (one at a
// time, under mu), then the grouped residual compiled on its own. It gives up, leaving f empty, when f is no longer the one in
// force (a newer catalog or revision makes its own).
func (e *Engine) makeListResidual(prepare func() (*rego.PreparedPartialQuery, error), mu *sync.Mutex, f *listFast) {
	defer close(f.done)
	ctx, cancel := context.WithTimeout(context.Background(), listPartialTimeout)
	defer cancel()
	mu.Lock()
	if e.cur.Load().listFast != f {
		mu.Unlock()
		return
	}
	partial, err := prepare()
	if partial == nil || err != nil {
		mu.Unlock()
		e.opts.Logger.Debug("tools/list: no partial evaluation; a new principal's list is evaluated in full", "error", err)
		return
	}
	// The catalog's terms are shared with evaluations: a copy, which
	// partial evaluation may write into.
	in := ast.NewObject(
		ast.Item(ast.InternedTerm("action"), ast.StringTerm(ActionList)),
		ast.Item(ast.InternedTerm("tools"), ast.NewTerm(f.catalog.tools).Copy()))
	pq, err := partial.Partial(ctx, rego.EvalParsedInput(in))
	if err == nil {
		pq = copyPartial(pq) // later partial evaluations write into its terms
	}
	mu.Unlock()
	if err != nil {
		e.opts.Logger.Debug("tools/list: no partial evaluation; a new principal's list is evaluated in full", "error", err)
		return
	}
	f.res = groupListResidual(pq)
}

// groupListResidual groups the queries of the list's residual by their
// conditions and compiles them, or returns nil when a query is not of the
// form `<condition>; toolgate_name = "<name>"` with a condition that reads
// nothing of the input but input.principal, no data but the rules partial
// evaluation wrote, and has no `with`: then evaluating the conditions with
// an input of the principal alone, on no data, is evaluating the policy.
func groupListResidual(pq *rego.PartialQueries) *listResidual {
	if !readsOnly(pq, ast.InputRootRef.Append(ast.StringTerm("principal"))) {
		return nil
	}
	index := map[string]int{}
	var conditions []ast.Body
	var groups [][]string
	for _, q := range pq.Queries {
		name, condition, ok := splitName(q)
		if !ok {
			return nil
		}
		key, ok := conditionKey(condition)
		if !ok {
			return nil
		}
		i, seen := index[key]
		if !seen {
			i = len(conditions)
			index[key] = i
			conditions = append(conditions, condition)
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], name)
	}
	module, err := ast.ParseModule("list.rego", "package toolgate_list\ngroups contains 0 if { true }")
	if err != nil {
		return nil
	}
	template := module.Rules[0]
	module.Rules = nil
	for i, condition := range conditions {
		r := template.Copy()
		r.Head.Key = ast.InternedTerm(i)
		if len(condition) > 0 {
			r.Body = condition
		}
		r.Module = module
		module.Rules = append(module.Rules, r)
	}
	q := prepareResidual(ast.MustParseBody(listGroupsVar+" = data.toolgate_list.groups"), pq.Support, module)
	if q == nil {
		return nil
	}
	return &listResidual{query: q, groups: groups}
}

// splitName splits a query of the list's residual into the name it binds
// listNameVar to and the rest, its condition: one expression
// `toolgate_name = "<name>"`, and no other that names the variable.
func splitName(q ast.Body) (name string, condition ast.Body, ok bool) {
	nameVar := ast.Var(listNameVar)
	found := false
	for _, expr := range q {
		if !containsVar(expr, nameVar) {
			condition = append(condition, expr)
			continue
		}
		if found || !expr.IsEquality() || expr.Negated || len(expr.With) > 0 {
			return "", nil, false
		}
		a, b := expr.Operand(0), expr.Operand(1)
		if !a.Equal(ast.VarTerm(listNameVar)) {
			a, b = b, a
		}
		s, isString := b.Value.(ast.String)
		if !a.Equal(ast.VarTerm(listNameVar)) || !isString {
			return "", nil, false
		}
		name, found = string(s), true
	}
	for i, expr := range condition {
		expr.Index = i
	}
	return name, condition, found
}

func containsVar(x any, v ast.Var) bool {
	found := false
	ast.WalkVars(x, func(x ast.Var) bool {
		found = found || x.Equal(v)
		return found
	})
	return found
}

// conditionKey is a condition's text with the variables partial
// evaluation made (__localN__, $N) renamed in order of appearance, so
// that conditions that differ only in those names share a key. A
// condition naming a variable like the renamed ones has none.
func conditionKey(condition ast.Body) (string, bool) {
	names := map[ast.Var]ast.Var{}
	ok := true
	renamed, err := ast.TransformVars(condition.Copy(), func(v ast.Var) (ast.Value, error) {
		s := string(v)
		switch {
		case strings.HasPrefix(s, "__toolgate_"):
			ok = false
		case strings.HasPrefix(s, "__local"), strings.HasPrefix(s, "$"):
			n, seen := names[v]
			if !seen {
				n = ast.Var(fmt.Sprintf("__toolgate_%d", len(names)))
				names[v] = n
			}
			return n, nil
		}
		return v, nil
	})
	if err != nil || !ok {
		return "", false
	}
	return renamed.(ast.Body).String(), true
}

// visibleOfResidual decides p's visible set from the list residual. The
// caller evaluates the policy in full when ok is false: an error or an
// answer that is not a set of group numbers, which a faithful residual
// does not give, is doubt about the residual, not the decision.
func (e *Engine) visibleOfResidual(ctx context.Context, r *listResidual, p *idp.Principal) (out map[string]bool, ok bool) {
	if len(r.groups) == 0 { // partial evaluation found no way for any name
		return map[string]bool{}, true
	}
	principal, err := ast.InterfaceToValue(p.Input())
	if err != nil {
		return nil, false
	}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	in := ast.NewObject(ast.Item(ast.InternedTerm("principal"), ast.NewTerm(principal)))
	rs, err := r.query.Eval(ctx, e.evalOptions(in)...)
	if err != nil || len(rs) != 1 {
		return nil, false
	}
	held, isList := rs[0].Bindings[listGroupsVar].([]any)
	if !isList {
		return nil, false
	}
	out = map[string]bool{}
	for _, g := range held {
		n, isNumber := g.(json.Number)
		i, err := n.Int64()
		if !isNumber || err != nil || i < 0 || int(i) >= len(r.groups) {
			return nil, false
		}
		for _, name := range r.groups[i] {
			out[name] = true
		}
	}
	return out, true
}
