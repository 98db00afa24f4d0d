package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/upstream"
)

// Prompts and resources of the upstreams, gated like tools (issue 16;
// docs/policy-contract.md, "Prompts and resources"):
//
//   - prompts/list and resources/list, resources/templates/list show what
//     visible_prompts and visible_resources grant (mcp-go's prompt filter;
//     the resource lists are filtered after mcp-go built them).
//   - prompts/get of a hidden prompt is mcp-go's own "prompt not found", by
//     the same filter; of a visible one, allow decides (enforcePrompt).
//   - resources/read and completion/complete are decided by the gate before
//     mcp-go sees them (decideOther): an unknown or hidden resource or
//     prompt gets the gate's answer, word for word mcp-go's for an unknown
//     one, so that a hidden one cannot be told from a missing one.

// UpstreamOthers are the prompts and resources of the upstreams; an
// *upstream.Pool is one. A Server whose Upstreams are also UpstreamOthers
// serves them.
type UpstreamOthers interface {
	Prompts() []upstream.Prompt
	Resources() []upstream.Resource
	ResourceTemplates() []upstream.ResourceTemplate
	// Route names the upstream that serves a read of uri, and the template
	// it matched ("" for a listed resource).
	Route(uri string) (server, template string, ok bool)
	// PromptServer names the upstream of a prompt and its own name for it.
	PromptServer(name string) (server, upstreamName string, ok bool)
	Read(ctx context.Context, server string, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error)
	Complete(ctx context.Context, server string, req mcp.CompleteRequest, ref string) (*mcp.Completion, error)
}

// ActionDecider is a Decider that decides prompts and resources
// (*policy.Engine is one). With a Decider that is not, no prompt or
// resource is visible.
type ActionDecider interface {
	VisiblePrompts(ctx context.Context, p *idp.Principal) (map[string]bool, error)
	VisibleResources(ctx context.Context, p *idp.Principal) (map[string]bool, error)
	DecideAction(ctx context.Context, p *idp.Principal, action string, t policy.Target) policy.Decision
}

// PromptsSetter is an ActionDecider whose catalog of prompts and resources
// changes while it serves.
type PromptsSetter interface {
	SetPromptsAndResources(prompts []policy.Prompt, resources []policy.Resource, templates []policy.ResourceTemplate) error
}

// othersOptions are the mcp-go options that serve the upstreams' prompts
// and resources, when the Upstreams have them.
func (s *Server) othersOptions(up Upstreams, hooks *mcpserver.Hooks) []mcpserver.ServerOption {
	others, ok := up.(UpstreamOthers)
	if !ok {
		return nil
	}
	s.others = others
	s.promptNames.Store(new(map[string]bool))
	hooks.AddAfterInitialize(s.advertiseSubscribe)
	hooks.AddBeforeSubscriptionsListen(s.noListenSubscriptions)
	hooks.AddAfterListResources(func(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
		visible := s.visibleResources(ctx)
		res.Resources = kept(res.Resources, func(r mcp.Resource) bool { return visible[r.URI] })
	})
	hooks.AddAfterListResourceTemplates(func(ctx context.Context, _ any, _ *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
		visible := s.visibleResources(ctx)
		res.ResourceTemplates = kept(res.ResourceTemplates, func(t mcp.ResourceTemplate) bool {
			return t.URITemplate != nil && visible[t.URITemplate.Raw()]
		})
	})
	return []mcpserver.ServerOption{
		mcpserver.WithPromptCapabilities(true),
		// subscribe: mcp-go answers an allowed resources/subscribe only
		// with it; initialize advertises it as the upstreams do
		// (advertiseSubscribe).
		mcpserver.WithResourceCapabilities(true, true),
		mcpserver.WithCompletions(),
		mcpserver.WithPromptFilter(s.filterPrompts),
		mcpserver.WithPromptHandlerMiddleware(s.enforcePrompt),
		mcpserver.WithPromptCompletionProvider(completer{s}),
		mcpserver.WithResourceCompletionProvider(completer{s}),
	}
}

// othersChanged serves the upstreams' prompts and resources as they are
// now: the policy's catalog first, then mcp-go's lists (which tell every
// session: MCP server/prompts and server/resources, "List Changed
// Notification"). A kind that did not change is left as it is, so that an
// upstream's tool change tells no session its prompts or resources
// changed. The caller holds upstreamMu.
func (s *Server) othersChanged() {
	if s.others == nil {
		return
	}
	prompts, resources, templates := s.others.Prompts(), s.others.Resources(), s.others.ResourceTemplates()
	served := othersServed{prompts: definitions(prompts, func(p upstream.Prompt) []any { return []any{p.Server, p.Prompt} }),
		resources: definitions(resources, func(r upstream.Resource) []any { return []any{r.Server, r.Resource} }),
		templates: definitions(templates, func(t upstream.ResourceTemplate) []any { return []any{t.Server, t.Template} })}
	if served == s.othersServed {
		return
	}
	if ps, ok := s.policy.(PromptsSetter); ok {
		pc := make([]policy.Prompt, 0, len(prompts))
		for _, p := range prompts {
			args := make([]string, 0, len(p.Prompt.Arguments))
			for _, a := range p.Prompt.Arguments {
				args = append(args, a.Name)
			}
			pc = append(pc, policy.Prompt{Name: p.Prompt.Name, Title: p.Prompt.Title, Description: p.Prompt.Description, Arguments: args, Server: p.Server})
		}
		rc := make([]policy.Resource, 0, len(resources))
		for _, r := range resources {
			rc = append(rc, policy.Resource{URI: r.Resource.URI, Name: r.Resource.Name, Title: r.Resource.Title, Description: r.Resource.Description, MIMEType: r.Resource.MIMEType, Server: r.Server})
		}
		tc := make([]policy.ResourceTemplate, 0, len(templates))
		for _, t := range templates {
			tc = append(tc, policy.ResourceTemplate{URITemplate: t.Template.URITemplate.Raw(), Name: t.Template.Name, Title: t.Template.Title, Description: t.Template.Description, MIMEType: t.Template.MIMEType, Server: t.Server})
		}
		if err := ps.SetPromptsAndResources(pc, rc, tc); err != nil {
			s.log.Error("upstream prompts and resources not served: the policy refused the catalog", "error", err)
			return
		}
	}
	last := s.othersServed
	s.othersServed = served
	if served.prompts != last.prompts {
		names := make([]string, 0, len(prompts))
		sp := make([]mcpserver.ServerPrompt, 0, len(prompts))
		for _, p := range prompts {
			names = append(names, p.Prompt.Name)
			sp = append(sp, p.ServerPrompt)
		}
		s.setPromptLabels(names)
		s.mcp.SetPrompts(sp...)
	}
	if served.resources != last.resources {
		sr := make([]mcpserver.ServerResource, 0, len(resources))
		for _, r := range resources {
			sr = append(sr, mcpserver.ServerResource{Resource: r.Resource, Handler: s.readRouted})
		}
		s.mcp.SetResources(sr...)
	}
	if served.templates != last.templates {
		st := make([]mcpserver.ServerResourceTemplate, 0, len(templates))
		for _, t := range templates {
			st = append(st, mcpserver.ServerResourceTemplate{Template: t.Template, Handler: s.readRouted})
		}
		s.mcp.SetResourceTemplates(st...)
	}
}

// othersServed are the prompts, resources and templates as last served:
// their servers and definitions, as JSON.
type othersServed struct{ prompts, resources, templates string }

// definitions is the JSON of each item's upstream and definition (def).
func definitions[T any](items []T, def func(T) []any) string {
	out := make([]any, 0, len(items))
	for _, x := range items {
		out = append(out, def(x))
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// setPromptLabels bounds the metrics' prompt labels to the catalog, and
// drops the series of prompts gone from it.
func (s *Server) setPromptLabels(names []string) {
	old := *s.promptNames.Load()
	now := set(names)
	s.promptNames.Store(&now)
	for name := range old {
		if !now[name] {
			s.metrics.decisions.DeletePartialMatch(map[string]string{"action": policy.ActionPromptGet, "tool": name})
			s.metrics.decisions.DeletePartialMatch(map[string]string{"action": policy.ActionComplete, "tool": name})
		}
	}
}

func (s *Server) promptLabel(name string) string {
	if p := s.promptNames.Load(); p != nil && (*p)[name] {
		return name
	}
	return labelUnknown
}

func (s *Server) actions() ActionDecider {
	a, _ := s.policy.(ActionDecider)
	return a
}

// visibleSet asks the policy for the visible prompts or resources of the
// principal in ctx, and logs and counts the decision like a tools/list.
// Nothing is visible on an error or without an ActionDecider.
func (s *Server) visibleSet(ctx context.Context, action string) map[string]bool {
	p, ok := idp.PrincipalFrom(ctx)
	a := s.actions()
	if !ok || a == nil {
		return map[string]bool{}
	}
	start := time.Now()
	var visible map[string]bool
	var err error
	var catalog []string
	if action == policy.ActionPromptsList {
		visible, err = a.VisiblePrompts(ctx, p)
		for _, p := range s.others.Prompts() {
			catalog = append(catalog, p.Prompt.Name)
		}
	} else {
		visible, err = a.VisibleResources(ctx, p)
		for _, r := range s.others.Resources() {
			catalog = append(catalog, r.Resource.URI)
		}
		for _, t := range s.others.ResourceTemplates() {
			if t.Template.URITemplate != nil {
				catalog = append(catalog, t.Template.URITemplate.Raw())
			}
		}
	}
	return s.listDecided(action, p, start, visible, err, catalog, action == policy.ActionPromptsList)
}

func (s *Server) visibleResources(ctx context.Context) map[string]bool {
	return s.visibleSet(ctx, policy.ActionResourcesList)
}

// filterPrompts is mcp-go's prompt filter, applied to prompts/list and to
// each prompts/get: a prompt the principal may not see is absent, and
// getting it is mcp-go's answer for a prompt that does not exist.
func (s *Server) filterPrompts(ctx context.Context, prompts []mcp.Prompt) []mcp.Prompt {
	visible := s.visibleSet(ctx, policy.ActionPromptsList)
	return kept(prompts, func(p mcp.Prompt) bool { return visible[p.Name] })
}

// kept is the items keep keeps, for the lists of tools, prompts, resources
// and templates: items itself when it keeps them all (an mcp.Tool is large,
// and a catalog of 1000 copied on every list was most of the gate's time of
// a warm list), else a new slice of exactly those (the list mcp-go made is
// not written into).
func kept[T any](items []T, keep func(T) bool) []T {
	n := 0
	for _, it := range items {
		if keep(it) {
			n++
		}
	}
	if n == len(items) {
		return items
	}
	out := make([]T, 0, n)
	for _, it := range items {
		if keep(it) {
			out = append(out, it)
		}
	}
	return out
}

// enforcePrompt wraps every prompt handler: a visible prompt is got only
// when allow says so, with its arguments.
func (s *Server) enforcePrompt(next mcpserver.PromptHandlerFunc) mcpserver.PromptHandlerFunc {
	return func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		args := make(map[string]any, len(req.Params.Arguments))
		for k, v := range req.Params.Arguments {
			args[k] = v
		}
		server, _, _ := s.others.PromptServer(req.Params.Name)
		d := s.decideOtherAction(ctx, policy.ActionPromptGet, policy.Target{Prompt: req.Params.Name, Arguments: args}, server)
		if !d.Allowed {
			return nil, fmt.Errorf("Permission denied: %s (decision %s)", d.Reason, d.ID)
		}
		return next(ctx, req)
	}
}

// decideOtherAction asks the policy about one prompt or resource action
// and logs and counts the decision: the metrics' label is the prompt's name
// from the catalog, or for a resource its upstream's name, never a URI.
func (s *Server) decideOtherAction(ctx context.Context, action string, t policy.Target, server string) policy.Decision {
	p, ok := idp.PrincipalFrom(ctx)
	a := s.actions()
	if !ok || a == nil {
		return policy.Decision{ID: policy.NewID(), Reason: "no policy for prompts and resources", Revision: s.policy.Revision()}
	}
	start := time.Now()
	d := a.DecideAction(ctx, p, action, t)
	eval := time.Since(start)
	code := DecisionCode(d)
	label := s.promptLabel(t.Prompt)
	if t.Prompt == "" {
		label = s.metrics.upstream(server)
	}
	result, waived := s.dryRunOf(resultOf(code))
	if waived {
		d.Visible, d.Allowed, d.Err = true, true, nil
	}
	if d.Err != nil {
		s.log.Error("policy evaluation failed: "+string(code), "action", action, "decision_id", d.ID, "error", d.Err)
	}
	reason := d.Reason
	if result == resultAllow {
		reason = ""
	}
	s.metrics.decisions.WithLabelValues(action, label, result, string(code)).Inc()
	s.metrics.evalDuration.WithLabelValues(action).Observe(eval.Seconds())
	var args []byte
	if t.Prompt != "" {
		args, _ = json.Marshal(t.Arguments)
	}
	s.decisions.write(entry{ID: d.ID, Principal: p, Action: action, Prompt: t.Prompt, URI: t.URI, Server: server, Arguments: args,
		Result: result, Code: code, Reason: reason, Revision: d.Revision, At: start.Add(eval), Eval: eval, Err: d.Err})
	return d
}

// otherKey carries the gate's decision on a resources/read or
// completion/complete to the handler mcp-go runs for it.
type otherKey struct{}

type otherRoute struct {
	server string // the upstream
	ref    string // completion: the prompt's upstream name, or the template
}

// decideOther decides a resources/read or a completion/complete before
// mcp-go sees it. An unknown or hidden resource or prompt is answered here,
// with mcp-go's own error for an unknown one; a visible one that allow
// refuses gets "Permission denied". Otherwise the route goes to the handler
// in the returned context. ok is false when the gate answered.
func (s *Server) decideOther(w http.ResponseWriter, ctx context.Context, method string, body []byte, modern bool) (context.Context, bool) {
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Params struct {
			URI string `json:"uri"`
			Ref struct {
				Type string `json:"type"`
				Name string `json:"name"`
				URI  string `json:"uri"`
			} `json:"ref"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &msg) != nil || len(msg.ID) == 0 {
		return ctx, true // not a request the gate can decide: mcp-go answers it
	}
	notFound := func(uri string) { writeResourceNotFound(w, msg.ID, uri, modern) }
	var route otherRoute
	var d policy.Decision
	switch {
	case method == string(mcp.MethodCompletionComplete) && msg.Params.Ref.Type == "ref/prompt":
		name := msg.Params.Ref.Name
		server, upName, known := s.others.PromptServer(name)
		if known {
			d = s.decideOtherAction(ctx, policy.ActionComplete, policy.Target{Prompt: name}, server)
		}
		if !known || !d.Visible {
			writeRPCError(w, msg.ID, mcp.INVALID_PARAMS, fmt.Sprintf("prompt '%s' not found: %s", name, mcpserver.ErrPromptNotFound))
			return ctx, false
		}
		route = otherRoute{server: server, ref: upName}
	case method == string(mcp.MethodCompletionComplete) && msg.Params.Ref.Type == "ref/resource":
		uri := msg.Params.Ref.URI
		server, template, known := s.templateRoute(uri)
		if known {
			d = s.decideOtherAction(ctx, policy.ActionComplete, policy.Target{URI: uri, URITemplate: template}, server)
		}
		if !known || !d.Visible {
			notFound(uri)
			return ctx, false
		}
		route = otherRoute{server: server, ref: uri}
	case method == string(mcp.MethodCompletionComplete):
		return ctx, true // mcp-go refuses an unknown ref type
	default:
		uri := msg.Params.URI
		server, template, known := s.others.Route(uri)
		if known {
			d = s.decideOtherAction(ctx, policy.ActionResourceRead, policy.Target{URI: uri, URITemplate: template}, server)
		}
		if !known || !d.Visible {
			notFound(uri)
			return ctx, false
		}
		route = otherRoute{server: server}
	}
	if !d.Allowed {
		writeRPCError(w, msg.ID, mcp.INVALID_REQUEST, fmt.Sprintf("Permission denied: %s (decision %s)", d.Reason, d.ID))
		return ctx, false
	}
	return context.WithValue(ctx, otherKey{}, &route), true
}

// templateRoute is the upstream of a completion's resource reference: the
// template it names, else the resource it names.
func (s *Server) templateRoute(uri string) (server, template string, ok bool) {
	for _, t := range s.others.ResourceTemplates() {
		if t.Template.URITemplate.Raw() == uri {
			return t.Server, uri, true
		}
	}
	return s.others.Route(uri)
}

// readRouted is the handler of every upstream resource and template: the
// read goes to the upstream the gate decided on (decideOther). Without a
// decision (a read that did not pass the gate) it is refused.
func (s *Server) readRouted(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	r, ok := ctx.Value(otherKey{}).(*otherRoute)
	if !ok {
		return nil, errors.New("resource read not decided by the gate")
	}
	return s.others.Read(ctx, r.server, req)
}

// completer forwards completion/complete to the upstream the gate decided
// on (MCP server/utilities, "Completion").
type completer struct{ s *Server }

func (c completer) CompletePromptArgument(ctx context.Context, _ string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	return c.complete(ctx, mcp.PromptReference{Type: "ref/prompt"}, arg, cctx)
}

func (c completer) CompleteResourceArgument(ctx context.Context, _ string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	return c.complete(ctx, mcp.ResourceReference{Type: "ref/resource"}, arg, cctx)
}

func (c completer) complete(ctx context.Context, ref any, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	r, ok := ctx.Value(otherKey{}).(*otherRoute)
	if !ok {
		return nil, errors.New("completion not decided by the gate")
	}
	req := mcp.CompleteRequest{}
	req.Params.Ref, req.Params.Argument, req.Params.Context = ref, arg, cctx
	return c.s.others.Complete(ctx, r.server, req, r.ref)
}

// writeRPCError answers a JSON-RPC request with an error (JSON-RPC 2.0
// §5.1), as mcp-go answers one over Streamable HTTP: a 200 with a JSON body.
func writeRPCError(w http.ResponseWriter, id json.RawMessage, code int, message string) {
	var b strings.Builder
	m, _ := json.Marshal(message)
	fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}`, id, code, m)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
}
