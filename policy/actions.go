package policy

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/toolgate/toolgate/idp"
)

// Prompts and resources (issue 16; docs/policy-contract.md, "Prompts and
// resources"): the policy decides them with the contract's style for tools.
// visible_prompts and visible_resources are evaluated once per principal and
// cached like visible_tools; allow is asked for each prompts/get,
// resources/read, resources/subscribe and completion/complete, with
// input.action the method and input.prompt or input.resource what it names.

// The actions of prompts and resources.
const (
	ActionPromptsList       = "prompts/list"
	ActionPromptGet         = "prompts/get"
	ActionResourcesList     = "resources/list"
	ActionResourceRead      = "resources/read"
	ActionResourceSubscribe = "resources/subscribe"
	ActionComplete          = "completion/complete"
)

// Prompt is what a policy sees of one prompt of the catalog (input.prompts).
type Prompt struct {
	Name        string   `json:"name"` // as the client sees it: with the upstream's prefix
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Arguments   []string `json:"arguments"` // the names of its arguments
	Server      string   `json:"server"`
}

// Resource is what a policy sees of one resource (input.resources).
type Resource struct {
	URI         string `json:"uri"`
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	MIMEType    string `json:"mime_type"`
	Server      string `json:"server"`
}

// ResourceTemplate is what a policy sees of one resource template
// (input.resource_templates).
type ResourceTemplate struct {
	URITemplate string `json:"uri_template"` // RFC 6570
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	MIMEType    string `json:"mime_type"`
	Server      string `json:"server"`
}

// Target is what a prompt or resource action names. A prompt action sets
// Prompt (and Arguments); a resource action sets URI, and URITemplate when
// the URI is served through a template (then the policy may rule on the
// template). The server is the catalog's, never the caller's.
type Target struct {
	Prompt      string
	Arguments   map[string]any
	URI         string
	URITemplate string
}

//go:embed wrapper_actions.rego
var actionsModule string

const actionsFile = "toolgate/wrapper_actions.rego"

func init() {
	contractTypes["visible_prompts"] = "a set of strings"
	contractTypes["visible_resources"] = "a set of strings"
}

// actionQueries are one revision's prepared queries for prompts and
// resources, with the visible sets cached per principal (nil caches: not
// cacheable).
type actionQueries struct {
	prompts, resources, decide rego.PreparedEvalQuery
	promptCache                *lru.Cache[string, map[string]bool]
	resourceCache              *lru.Cache[string, map[string]bool]
}

// addActionsModule adds the wrapper of the prompt and resource rules.
func addActionsModule(modules map[string]*ast.Module) error {
	m, err := ast.ParseModule(actionsFile, actionsModule)
	modules[actionsFile] = m
	return err
}

func prepareActions(prepare func(string) (rego.PreparedEvalQuery, error)) (*actionQueries, error) {
	a := &actionQueries{}
	var err error
	if a.prompts, err = prepare("data.toolgate.internal.visible_prompts"); err != nil {
		return nil, err
	}
	if a.resources, err = prepare("data.toolgate.internal.visible_resources"); err != nil {
		return nil, err
	}
	if a.decide, err = prepare("data.toolgate.internal.action"); err != nil {
		return nil, err
	}
	return a, nil
}

// fresh is a with empty caches: a new revision or a new catalog.
func (a *actionQueries) fresh(size int, cacheable bool) *actionQueries {
	if a == nil {
		return nil
	}
	n := &actionQueries{prompts: a.prompts, resources: a.resources, decide: a.decide}
	if cacheable {
		n.promptCache, _ = lru.New[string, map[string]bool](size)
		n.resourceCache, _ = lru.New[string, map[string]bool](size)
	}
	return n
}

// extrasInput is the catalog of prompts and resources as policy input,
// parsed once per change and shared by every evaluation.
type extrasInput struct{ cur atomic.Pointer[extrasData] }

type extrasData struct {
	prompts, resources, templates ast.Value
	promptServer                  map[string]string
	resourceServer                map[string]string
	templateServer                map[string]string
}

var emptyExtras = func() *extrasData {
	d, _ := newExtras(nil, nil, nil)
	return d
}()

func newExtras(prompts []Prompt, resources []Resource, templates []ResourceTemplate) (*extrasData, error) {
	d := &extrasData{promptServer: map[string]string{}, resourceServer: map[string]string{}, templateServer: map[string]string{}}
	pl := make([]any, 0, len(prompts))
	for _, p := range prompts {
		args := make([]any, 0, len(p.Arguments))
		for _, a := range p.Arguments {
			args = append(args, a)
		}
		pl = append(pl, map[string]any{"name": p.Name, "title": p.Title, "description": p.Description, "arguments": args, "server": serverOf(p.Server)})
		d.promptServer[p.Name] = serverOf(p.Server)
	}
	rl := make([]any, 0, len(resources))
	for _, r := range resources {
		rl = append(rl, map[string]any{"uri": r.URI, "name": r.Name, "title": r.Title, "description": r.Description, "mime_type": r.MIMEType, "server": serverOf(r.Server)})
		d.resourceServer[r.URI] = serverOf(r.Server)
	}
	tl := make([]any, 0, len(templates))
	for _, t := range templates {
		tl = append(tl, map[string]any{"uri_template": t.URITemplate, "name": t.Name, "title": t.Title, "description": t.Description, "mime_type": t.MIMEType, "server": serverOf(t.Server)})
		d.templateServer[t.URITemplate] = serverOf(t.Server)
	}
	var err error
	for _, x := range []struct {
		to   *ast.Value
		list []any
	}{{&d.prompts, pl}, {&d.resources, rl}, {&d.templates, tl}} {
		if *x.to, err = ast.InterfaceToValue(x.list); err != nil {
			return nil, err
		}
		*x.to = sorted(*x.to)
	}
	return d, nil
}

func serverOf(s string) string {
	if s == "" {
		return Builtin
	}
	return s
}

func (x *extrasInput) load() *extrasData {
	if d := x.cur.Load(); d != nil {
		return d
	}
	return emptyExtras
}

// SetPromptsAndResources puts the catalog of prompts, resources and resource
// templates in force (the upstreams' changed). The caches of visible prompts
// and resources, made for the old catalog, are dropped.
func (e *Engine) SetPromptsAndResources(prompts []Prompt, resources []Resource, templates []ResourceTemplate) error {
	d, err := newExtras(prompts, resources, templates)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.extras.cur.Store(d)
	c := *e.cur.Load()
	c.act = c.act.fresh(e.opts.CacheSize, c.cacheable)
	e.cur.Store(&c)
	return nil
}

// actionInput is the input of a prompt or resource action: the principal,
// the action, the catalogs of prompts and resources, and what it names.
func (e *Engine) actionInput(p *idp.Principal, action string, t *Target) (ast.Value, error) {
	d := e.extras.load()
	items, err := questionItems(p, action)
	if err != nil {
		return nil, err
	}
	items = append(items,
		ast.Item(ast.InternedTerm("prompts"), ast.NewTerm(d.prompts)),
		ast.Item(ast.InternedTerm("resources"), ast.NewTerm(d.resources)),
		ast.Item(ast.InternedTerm("resource_templates"), ast.NewTerm(d.templates)))
	switch {
	case t == nil:
	case t.Prompt != "":
		args := t.Arguments
		if args == nil {
			args = map[string]any{}
		}
		v, err := ast.InterfaceToValue(args)
		if err != nil {
			return nil, err
		}
		items = append(items, ast.Item(ast.InternedTerm("prompt"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(t.Prompt)),
			ast.Item(ast.InternedTerm("server"), ast.StringTerm(d.promptServer[t.Prompt])),
			ast.Item(ast.InternedTerm("arguments"), ast.NewTerm(v)),
		)))
	default:
		server := d.resourceServer[t.URI]
		if t.URITemplate != "" {
			server = d.templateServer[t.URITemplate]
		}
		items = append(items, ast.Item(ast.InternedTerm("resource"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("uri"), ast.StringTerm(t.URI)),
			ast.Item(ast.InternedTerm("uri_template"), ast.StringTerm(t.URITemplate)),
			ast.Item(ast.InternedTerm("server"), ast.StringTerm(server)),
		)))
	}
	return ast.NewObject(items...), nil
}

// VisiblePrompts evaluates visible_prompts for p: the names of the prompts
// prompts/list shows p. The answer is shared: callers must not change it. On
// an evaluation error (or a policy without the rule) nothing is visible.
func (e *Engine) VisiblePrompts(ctx context.Context, p *idp.Principal) (map[string]bool, error) {
	c := e.cur.Load()
	return e.visibleSet(ctx, p, ActionPromptsList, c.act.prompts, c.act.promptCache, "visible_prompts")
}

// VisibleResources evaluates visible_resources for p: the URIs and URI
// templates resources/list and resources/templates/list show p.
func (e *Engine) VisibleResources(ctx context.Context, p *idp.Principal) (map[string]bool, error) {
	c := e.cur.Load()
	return e.visibleSet(ctx, p, ActionResourcesList, c.act.resources, c.act.resourceCache, "visible_resources")
}

func (e *Engine) visibleSet(ctx context.Context, p *idp.Principal, action string, q rego.PreparedEvalQuery, cache *lru.Cache[string, map[string]bool], rule string) (map[string]bool, error) {
	fp := p.Fingerprint()
	if cache != nil {
		if v, ok := cache.Get(fp); ok {
			return v, nil
		}
	}
	in, err := e.actionInput(p, action, nil)
	if err != nil {
		return map[string]bool{}, err
	}
	ctx, cancel := e.deadline(ctx)
	defer cancel()
	rs, err := q.Eval(ctx, e.evalOptions(in)...)
	if err == nil && len(rs) != 1 {
		err = errors.New(rule + " is undefined")
	}
	if err != nil {
		return map[string]bool{}, err
	}
	names, err := stringSet(rs[0].Expressions[0].Value, rule)
	if err != nil {
		return map[string]bool{}, err
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	if cache != nil {
		cache.Add(fp, out)
	}
	return out, nil
}

// DecideAction decides one prompt or resource action (one of the Action
// constants but the lists) on t: allowed only when its prompt or resource is
// visible and allow is true. Each is evaluated afresh: a prompt's arguments
// differ from get to get.
func (e *Engine) DecideAction(ctx context.Context, p *idp.Principal, action string, t Target) Decision {
	c := e.cur.Load()
	d := Decision{ID: NewID(), Revision: c.revision}
	in, err := e.actionInput(p, action, &t)
	var rs rego.ResultSet
	if err == nil {
		ctx, cancel := e.deadline(ctx)
		defer cancel()
		rs, err = c.act.decide.Eval(ctx, e.evalOptions(in)...)
	}
	if err == nil && len(rs) != 1 {
		err = errors.New("decision is undefined")
	}
	if err == nil {
		err = d.readAction(rs[0].Expressions[0].Value)
	}
	if err != nil {
		return failed(d.ID, c, err)
	}
	d.Allowed = d.Visible && d.Allowed
	if !d.Allowed && d.Reason == "" {
		d.Reason = "denied by policy"
	}
	return d
}

func (d *Decision) readAction(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("decision is %T", v)
	}
	if d.Visible, ok = m["visible"].(bool); !ok {
		return wrongType(m["visible"], "visible_prompts and visible_resources must be sets of strings")
	}
	if d.Allowed, ok = m["allow"].(bool); !ok {
		return wrongType(m["allow"], "allow must be a boolean")
	}
	if d.Reason, ok = m["reason"].(string); !ok {
		return wrongType(m["reason"], "reason must be a string")
	}
	return nil
}

// actionRuleErrors lists the mistakes data.mcp.authz.rule_errors reports for
// the entries of prompt_rules and resource_rules (the default policy's
// layout), each an error at its entry's line in the data file: a mistake
// there denies the prompt or resource it rules, as for tool rules.
func actionRuleErrors(src Source, c *ast.Compiler, data map[string]any) Findings {
	if len(c.GetRulesExact(ast.MustParseRef("data.mcp.authz.rule_errors"))) == 0 {
		return nil
	}
	_, hasPrompts := data["prompt_rules"]
	_, hasResources := data["resource_rules"]
	if !hasPrompts && !hasResources {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lintBudget)
	defer cancel()
	rs, err := rego.New(rego.Query("data.mcp.authz.rule_errors"), rego.Compiler(c), rego.Store(inmem.NewFromObject(data))).Eval(ctx)
	if err != nil || len(rs) != 1 {
		return nil
	}
	errs, _ := rs[0].Expressions[0].Value.(map[string]any)
	var out Findings
	for _, key := range sortedKeys(errs) {
		for _, prefix := range []string{"prompt_rules.", "resource_rules."} {
			if len(key) <= len(prefix) || key[:len(prefix)] != prefix {
				continue
			}
			mistakes, _ := errs[key].([]any)
			name := key[len(prefix):]
			for _, m := range mistakes {
				f := Finding{File: src.String() + " data", Line: 1, Severity: "error", Message: fmt.Sprintf("%s: %v", key, m)}
				for _, file := range []string{"data.json", "data.yaml", "data.yml"} {
					if b, path, err := readSourceFile(src, file); err == nil && strings.Contains(string(b), name) {
						f.File, f.Line = path, lineOf(b, name)
						break
					}
				}
				out = append(out, f)
			}
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
