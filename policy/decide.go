package policy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/toolgate/toolgate/idp"
)

// NewID returns a new decision id: a random UUID (RFC 9562 §5.4), read from
// crypto/rand. (uuid's random pool would save about 0.3 µs an id, but it
// serves every UUID of the process, session ids too, from randomness kept
// in memory ahead of use, which its documentation advises against where
// ids are secrets.)
func NewID() string { return uuid.NewString() }

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
	Limits         []Limit  // of an allowed call: each must have room for it to run; sorted
	Revision       string   // the policy revision that decided
	Err            error    // an evaluation error (the call is then denied)
}

// own is d with lists of its own, so that the cache's copy and the
// caller's never share one.
func (d Decision) own() Decision {
	d.RequiredScopes = slices.Clone(d.RequiredScopes)
	d.Limits = slices.Clone(d.Limits)
	return d
}

// Visible evaluates visible_tools once for the whole catalog and returns
// the names visible to p. The answer is shared: callers must not change it.
// On an evaluation error nothing is visible.
func (e *Engine) Visible(ctx context.Context, p *idp.Principal) (map[string]bool, error) {
	c := e.cur.Load()
	var key [sha256.Size]byte
	if c.visible != nil {
		key = c.listKey(p)
		if v, ok := c.visible.Get(key); ok {
			return v, nil
		}
	}
	if r := c.listFast.ready(); r != nil {
		if out, ok := e.visibleOfResidual(ctx, r, p); ok {
			c.visible.Add(key, out)
			return out, nil
		}
	}
	in, err := e.in.input(p, ActionList, "", nil)
	if err != nil {
		return map[string]bool{}, err
	}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	rs, err := c.list.Eval(ctx, e.evalOptions(in)...)
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
		c.visible.Add(key, out)
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
// JSON-RPC params.arguments). Arguments that are not a JSON object are an
// error, so a denial.
//
// A decision that holds for every value of the arguments (partial
// evaluation says so, residualOf) is cached without them, so a call
// with arguments never seen before costs a lookup and a decoding of the
// arguments to check that they are an object; any other decision is
// cached with the arguments as sent, and its cache hit decodes nothing.
// A miss of the latter evaluates the residual of partial evaluation on
// the arguments alone where there is one, and the policy in full where
// there is none.
func (e *Engine) DecideRaw(ctx context.Context, p *idp.Principal, tool string, args []byte) Decision {
	c := e.cur.Load()
	id := NewID()
	if c.calls == nil {
		return e.evaluate(ctx, c, id, p, tool, args)
	}
	tk := c.toolKey(p, tool)
	key := tk
	r := e.residualOf(ctx, c, tk, p, tool)
	if r.free {
		// The arguments still have to be an object, for every call.
		if _, err := parseArguments(args); err != nil {
			return failed(id, c, err)
		}
	} else {
		key = callKey(tk, args)
	}
	if d, ok := c.calls.Get(key); ok {
		d = d.own() // a value: callers may change theirs
		d.ID = id
		return d
	}
	d, ok := Decision{}, false
	if r.query != nil {
		d, ok = e.evaluateResidual(ctx, c, id, r.query, args)
	}
	if !ok {
		d = e.evaluate(ctx, c, id, p, tool, args)
	}
	if d.Err == nil {
		// Errors are not cached: a cancelled or timed-out evaluation says
		// nothing of the next one.
		c.calls.Add(key, d.own())
	}
	return d
}

// evaluate decides a call by a full evaluation of the policy.
func (e *Engine) evaluate(ctx context.Context, c *compiled, id string, p *idp.Principal, tool string, args []byte) Decision {
	d := Decision{ID: id, Revision: c.revision}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	in, err := e.in.input(p, ActionCall, tool, args)
	var rs rego.ResultSet
	if err == nil {
		rs, err = c.call.Eval(ctx, e.evalOptions(in)...)
	}
	if err == nil && len(rs) != 1 {
		err = errors.New("decision is undefined")
	}
	if err == nil {
		err = d.read(rs[0].Expressions[0].Value)
	}
	if err != nil {
		return failed(id, c, err)
	}
	return d.settle()
}

// settle applies the contract to a decision as the policy gave it: a call
// is allowed only when its tool is visible, and a denial has a reason.
func (d Decision) settle() Decision {
	d.Allowed = d.Visible && d.Allowed
	if !d.Allowed && d.Reason == "" {
		d.Reason = "denied by policy"
	}
	return d
}

func failed(id string, c *compiled, err error) Decision {
	return Decision{ID: id, Revision: c.revision, Reason: "policy evaluation failed", Err: err}
}

// listKey names a principal's visible set: a SHA-256 of what of the
// principal the list query reads (principalKey).
func (c *compiled) listKey(p *idp.Principal) [sha256.Size]byte {
	var buf [256]byte // most principals: no allocation
	return sha256.Sum256(c.listPrincipal.append(buf[:0], p))
}

// toolKey names a principal's calls of one tool: a SHA-256 of what of the
// principal the call query reads (self-delimiting, principalKey.append)
// and the tool's name with its length before it.
func (c *compiled) toolKey(p *idp.Principal, tool string) [sha256.Size]byte {
	var buf [256]byte
	b := c.callPrincipal.append(buf[:0], p)
	b = binary.AppendUvarint(b, uint64(len(tool)))
	return sha256.Sum256(append(b, tool...))
}

// callKey names one call decision in the cache: the toolKey and the
// arguments as sent, so that no two different calls share a key (nor one
// with a toolKey: a SHA-256 collision aside).
func callKey(tk [sha256.Size]byte, args []byte) [sha256.Size]byte {
	var buf [512]byte // most calls: no allocation
	return sha256.Sum256(append(append(buf[:0], tk[:]...), args...))
}

// evalOptions are the options of one evaluation of input in.
func (e *Engine) evalOptions(in ast.Value) []rego.EvalOption {
	if e.now == nil {
		return []rego.EvalOption{rego.EvalParsedInput(in)}
	}
	return []rego.EvalOption{rego.EvalParsedInput(in), rego.EvalTime(e.now())}
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
	if d.Visible && d.Allowed { // a denied call is not counted: its limits are not read
		d.Limits, err = readLimits(m["limits"])
	}
	return err
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
