package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/config"
)

// Prompts and resources of the upstreams (issue 16; docs/configuration.md,
// "Prompts and resources of upstreams"). They are listed with the tools, from
// every upstream that advertises the capability (MCP server/prompts and
// server/resources, "Capabilities"), and served as tools are: a prompt's
// name gets the upstream's prefix; a resource keeps its URI and a template
// its URI template (RFC 6570), since a URI names the resource for the
// client and for what the upstream writes in its answers (links, embedded
// resources). A URI or template that an earlier upstream (configuration
// order) serves already is dropped, with a log line, like a tool name.

// Prompt is one upstream prompt as the gate serves it: named with the
// upstream's prefix, its handler forwarding prompts/get.
type Prompt struct {
	Server string // the upstream's name
	mcpserver.ServerPrompt
}

// Resource is one upstream resource as the gate serves it: its URI
// unchanged, its handler forwarding resources/read.
type Resource struct {
	Server string
	mcpserver.ServerResource
}

// ResourceTemplate is one upstream resource template as the gate serves it.
type ResourceTemplate struct {
	Server string
	mcpserver.ServerResourceTemplate
}

func init() {
	Methods = append(Methods, string(mcp.MethodPromptsList), string(mcp.MethodPromptsGet), string(mcp.MethodResourcesList),
		string(mcp.MethodResourcesTemplatesList), string(mcp.MethodResourcesRead), string(mcp.MethodResourcesSubscribe),
		string(mcp.MethodResourcesUnsubscribe), string(mcp.MethodCompletionComplete))
}

// others are an upstream's prompts, resources and templates as served, and
// the JSON they were parsed from (to tell a change).
type others struct {
	prompts   []Prompt
	resources []Resource
	templates []ResourceTemplate
	raw       []byte
	subscribe bool // the upstream advertises resources.subscribe
}

// listOthers lists what the upstream advertises besides tools. A list that
// fails leaves that kind empty, with a log line: the tools still serve.
func (u *Upstream) listOthers(ctx context.Context, c *client.Client) others {
	caps := c.GetServerCapabilities()
	var o others
	var raws [3][]json.RawMessage
	if caps.Prompts != nil {
		raws[0] = u.listKind(ctx, c, mcp.MethodPromptsList, "prompts")
	}
	if caps.Resources != nil {
		o.subscribe = caps.Resources.Subscribe
		raws[1] = u.listKind(ctx, c, mcp.MethodResourcesList, "resources")
		raws[2] = u.listKind(ctx, c, mcp.MethodResourcesTemplatesList, "resourceTemplates")
	}
	o.raw, _ = json.Marshal(raws)
	seen := map[string]bool{}
	keep := func(kind, key string, i int, err error) bool {
		switch {
		case err != nil:
			u.log.Warn("upstream "+kind+" dropped: malformed", "index", i, "error", err)
		case key == "" || !config.IsToolName(key) && kind == "prompt":
			u.log.Warn("upstream "+kind+" dropped: its name is not valid", "name", fmt.Sprintf("%.140q", key))
		case seen[kind+"\x00"+key]:
			u.log.Warn("upstream "+kind+" dropped: listed twice", "name", key)
		default:
			seen[kind+"\x00"+key] = true
			return true
		}
		return false
	}
	for i, b := range raws[0] {
		var p mcp.Prompt
		err := json.Unmarshal(b, &p)
		if keep("prompt", u.prefix+p.Name, i, err) {
			name := p.Name
			p.Name = u.prefix + name
			o.prompts = append(o.prompts, Prompt{Server: u.cfg.Name, ServerPrompt: mcpserver.ServerPrompt{Prompt: p, Handler: u.getPrompt(name)}})
		}
	}
	for i, b := range raws[1] {
		var r mcp.Resource
		err := json.Unmarshal(b, &r)
		if keep("resource", r.URI, i, err) {
			o.resources = append(o.resources, Resource{Server: u.cfg.Name, ServerResource: mcpserver.ServerResource{Resource: r, Handler: u.readResource}})
		}
	}
	for i, b := range raws[2] {
		var t mcp.ResourceTemplate
		err := json.Unmarshal(b, &t)
		if err == nil && t.URITemplate == nil {
			err = errors.New("no uriTemplate")
		}
		var key string
		if err == nil {
			key = t.URITemplate.Raw()
		}
		if keep("resource template", key, i, err) {
			o.templates = append(o.templates, ResourceTemplate{Server: u.cfg.Name,
				ServerResourceTemplate: mcpserver.ServerResourceTemplate{Template: t, Handler: u.readResource}})
		}
	}
	return o
}

// listKind pages through one list method, keeping the items of field as
// received; a failure is logged and lists nothing.
func (u *Upstream) listKind(ctx context.Context, c *client.Client, method mcp.MCPMethod, field string) []json.RawMessage {
	items, err := u.listPages(ctx, c, method, field)
	if err != nil {
		u.log.Warn("upstream list failed; none served until the next listing", "method", string(method), "error", err)
		return nil
	}
	if len(items) > MaxTools {
		u.log.Warn("upstream lists too many; the rest are dropped", "method", string(method), "listed", len(items), "kept", MaxTools)
		items = items[:MaxTools]
	}
	return items
}

// listPages pages through a list method (MCP basic/utilities,
// "Pagination"), keeping each item of field as the upstream wrote it. It
// asks the transport itself: mcp-go's typed results keep only what they
// know.
func (u *Upstream) listPages(ctx context.Context, c *client.Client, method mcp.MCPMethod, field string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	seen := map[string]bool{}
	cursor := ""
	for {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		start := time.Now()
		res, err := c.GetTransport().SendRequest(ctx, transport.JSONRPCRequest{
			JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(fmt.Sprintf("toolgate-list-%d", listIDs.Add(1))),
			Method: string(method), Params: params,
		})
		if err != nil {
			u.observe(ctx, method, start, transport.NewError(err))
			return nil, err
		}
		var page map[string]json.RawMessage
		var items []json.RawMessage
		var next string
		if res.Error != nil {
			err = res.Error.AsError()
		} else if err = json.Unmarshal(res.Result, &page); err == nil {
			if len(page[field]) > 0 {
				err = json.Unmarshal(page[field], &items)
			}
			if err == nil && len(page["nextCursor"]) > 0 {
				err = json.Unmarshal(page["nextCursor"], &next)
			}
		}
		if err != nil && res.Error == nil {
			err = fmt.Errorf("%s: malformed result: %w", method, err)
		}
		u.observe(ctx, method, start, err)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" || len(out) > MaxTools {
			return out, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("%s: the upstream repeats a cursor", method)
		}
		seen[next] = true
		cursor = next
	}
}

func (o others) equal(p others) bool { return bytes.Equal(o.raw, p.raw) && o.subscribe == p.subscribe }

// Prompts are the prompts of the upstreams that are up, in configuration
// order; a name taken by an earlier upstream is dropped.
func (p *Pool) Prompts() []Prompt {
	return firstClaims(p, func(o others) []Prompt { return o.prompts },
		func(x Prompt) string { return x.Prompt.Name }, "prompt")
}

// Resources are the resources of the upstreams that are up, in
// configuration order; a URI an earlier upstream serves is dropped.
func (p *Pool) Resources() []Resource {
	return firstClaims(p, func(o others) []Resource { return o.resources },
		func(x Resource) string { return x.Resource.URI }, "resource")
}

// ResourceTemplates are the resource templates of the upstreams that are
// up, in configuration order; a template an earlier upstream lists is
// dropped.
func (p *Pool) ResourceTemplates() []ResourceTemplate {
	return firstClaims(p, func(o others) []ResourceTemplate { return o.templates },
		func(x ResourceTemplate) string { return x.Template.URITemplate.Raw() }, "resource template")
}

// firstClaims is, in configuration order, the items of every upstream
// (list picks them from what it listed) whose key no earlier upstream
// claimed; a later claim is dropped with a debug line naming what (the
// kind of item) and the upstream that has it.
func firstClaims[T any](p *Pool, list func(others) []T, key func(T) string, what string) []T {
	taken := map[string]string{}
	var out []T
	for _, u := range p.ups {
		u.mu.Lock()
		items := list(u.others)
		u.mu.Unlock()
		for _, x := range items {
			k := key(x)
			if other, ok := taken[k]; ok {
				u.log.Debug("upstream "+what+" dropped: another upstream has it", "key", k, "other", other)
				continue
			}
			taken[k] = u.cfg.Name
			out = append(out, x)
		}
	}
	return out
}

// Route says which upstream serves a read of uri, and through which
// template ("" when a resource of that URI is listed): the upstream that
// lists the URI, else the first template (configuration order, then the
// upstream's own) that matches it (RFC 6570 §3, as mcp-go's URI templates
// match). ok is false when none does.
func (p *Pool) Route(uri string) (server, template string, ok bool) {
	for _, r := range p.Resources() {
		if r.Resource.URI == uri {
			return r.Server, "", true
		}
	}
	for _, t := range p.ResourceTemplates() {
		if t.Template.URITemplate.Regexp().MatchString(uri) {
			return t.Server, t.Template.URITemplate.Raw(), true
		}
	}
	return "", "", false
}

// PromptServer says which upstream serves the prompt the client sees as
// name, and the name the upstream knows it by.
func (p *Pool) PromptServer(name string) (server, upstreamName string, ok bool) {
	for _, x := range p.Prompts() {
		if x.Prompt.Name == name {
			u := p.upstream(x.Server)
			return x.Server, name[len(u.prefix):], true
		}
	}
	return "", "", false
}

func (p *Pool) upstream(name string) *Upstream {
	for _, u := range p.ups {
		if u.cfg.Name == name {
			return u
		}
	}
	return nil
}

// getPrompt is the handler of the upstream prompt name: prompts/get with
// the client's arguments, nothing else of the client's. Each message's
// content is passed on as the upstream wrote it.
func (u *Upstream) getPrompt(name string) mcpserver.PromptHandlerFunc {
	return func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		params := map[string]any{"name": name}
		if req.Params.Arguments != nil {
			params["arguments"] = req.Params.Arguments
		}
		raw, err := u.send(ctx, mcp.MethodPromptsGet, params)
		if err != nil {
			return nil, err
		}
		var r struct {
			Meta        *mcp.Meta `json:"_meta"`
			Description string    `json:"description"`
			Messages    []struct {
				Role    mcp.Role        `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, u.malformed(mcp.MethodPromptsGet, err)
		}
		res := &mcp.GetPromptResult{Description: r.Description, Messages: make([]mcp.PromptMessage, 0, len(r.Messages))}
		res.Meta = r.Meta
		for _, m := range r.Messages {
			if !json.Valid(m.Content) || len(bytes.TrimSpace(m.Content)) == 0 || m.Content[0] != '{' {
				return nil, u.malformed(mcp.MethodPromptsGet, errors.New("a message's content is not an object"))
			}
			res.Messages = append(res.Messages, mcp.PromptMessage{Role: m.Role, Content: rawContent{raw: m.Content}})
		}
		return res, nil
	}
}

// readResource is the handler of every upstream resource and template:
// resources/read of the URI on the upstream that serves it, each content
// passed on as the upstream wrote it (MCP server/resources, "Reading
// Resources"): a client gets the upstream's bytes.
func (u *Upstream) readResource(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	raw, err := u.send(ctx, mcp.MethodResourcesRead, map[string]any{"uri": req.Params.URI})
	if err != nil {
		return nil, err
	}
	var r struct {
		Contents []json.RawMessage `json:"contents"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, u.malformed(mcp.MethodResourcesRead, err)
	}
	out := make([]mcp.ResourceContents, 0, len(r.Contents))
	for _, c := range r.Contents {
		var probe struct {
			URI string `json:"uri"`
		}
		if err := json.Unmarshal(c, &probe); err != nil || probe.URI == "" {
			return nil, u.malformed(mcp.MethodResourcesRead, errors.New("a content without a uri"))
		}
		out = append(out, rawContents{raw: c})
	}
	return out, nil
}

// Complete forwards completion/complete for a prompt's argument (ref is
// the prompt's name as the upstream knows it) or a resource template's
// (ref is its URI template) to the upstream server.
func (p *Pool) Complete(ctx context.Context, server string, req mcp.CompleteRequest, ref string) (*mcp.Completion, error) {
	u := p.upstream(server)
	if u == nil {
		return nil, fmt.Errorf("no upstream %s", server)
	}
	r := map[string]any{"type": "ref/resource", "uri": ref}
	if _, ok := req.Params.Ref.(mcp.PromptReference); ok {
		r = map[string]any{"type": "ref/prompt", "name": ref}
	}
	params := map[string]any{"ref": r, "argument": req.Params.Argument}
	if req.Params.Context.Arguments != nil {
		params["context"] = req.Params.Context
	}
	raw, err := u.send(ctx, mcp.MethodCompletionComplete, params)
	if err != nil {
		return nil, err
	}
	var res mcp.CompleteResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, u.malformed(mcp.MethodCompletionComplete, err)
	}
	return &res.Completion, nil
}

func (u *Upstream) malformed(method mcp.MCPMethod, err error) error {
	u.log.Warn("upstream answered a malformed result", "method", string(method), "error", err)
	return fmt.Errorf("upstream %s answered a malformed result", u.cfg.Name)
}

// rawContent is a prompt message's content as the upstream wrote it.
// (mcp.Content has an unexported method: the embedded type brings it.)
type rawContent struct {
	mcp.TextContent
	raw json.RawMessage
}

func (c rawContent) MarshalJSON() ([]byte, error) { return c.raw, nil }

// rawContents is one content of a read resource as the upstream wrote it.
type rawContents struct {
	mcp.TextResourceContents
	raw json.RawMessage
}

func (c rawContents) MarshalJSON() ([]byte, error) { return c.raw, nil }

// send sends a request of method on the principal's session with the
// upstream (sessionFor), bounded by the upstream's timeout and
// max_result_bytes as a tools/call is (call.go), and returns its result or
// the upstream's JSON-RPC error.
func (u *Upstream) send(ctx context.Context, method mcp.MCPMethod, params map[string]any) (json.RawMessage, error) {
	return u.sendVia(ctx, u.sessionFor, method, params)
}

// sendVia is send on the session get gives.
func (u *Upstream) sendVia(ctx context.Context, get func(context.Context) (*session, string, error), method mcp.MCPMethod, params map[string]any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	start := time.Now()
	s, key, err := get(ctx)
	if err != nil {
		u.observe(ctx, method, start, err)
		var ce *capError
		if errors.As(err, &ce) || ctx.Err() == nil {
			return nil, u.failedErr(ctx, err)
		}
		return nil, fmt.Errorf("upstream %s did not answer within %s", u.cfg.Name, u.cfg.Timeout)
	}
	s.busy.Add(1)
	defer s.busy.Add(-1)
	s.lastUsed.Store(time.Now().UnixNano())
	f := &inflight{id: mcp.NewRequestId(fmt.Sprintf("toolgate-call-%d", callIDs.Add(1))), c: s.c, ctx: ctx}
	res, err := s.c.GetTransport().SendRequest(context.WithValue(ctx, inflightKey{}, f), transport.JSONRPCRequest{
		JSONRPC: mcp.JSONRPC_VERSION, ID: f.id, Method: string(method), Params: params,
	})
	switch {
	case u.overCap(s, key, f, err):
		// An answer, too large: an error, not a request refused at the
		// cap of processes (outcome error, as for tools/call).
		err = fmt.Errorf("upstream %s answered more than %s", u.cfg.Name, byteSize(u.cfg.MaxResultBytes))
		u.observe(ctx, method, start, err)
		u.log.Warn("upstream answer over max_result_bytes; the request fails", "method", string(method), "max_result_bytes", u.cfg.MaxResultBytes)
		return nil, err
	case err != nil && (ctx.Err() != nil || isTimeout(err)):
		if u.abandon(ctx, start, method, s, key, f.id, err) {
			return nil, fmt.Errorf("upstream %s did not answer within %s", u.cfg.Name, u.cfg.Timeout)
		}
		return nil, errors.New("the request was cancelled")
	case err != nil:
		err = transport.NewError(err)
		u.observe(ctx, method, start, err)
		u.drop(key, s)
		return nil, u.failedErr(ctx, err)
	case res.ID.String() != f.id.String():
		err = fmt.Errorf("the answer is to request %s, not %s", res.ID.String(), f.id.String())
		u.observe(ctx, method, start, err)
		return nil, u.malformed(method, err)
	case res.Error != nil:
		err = res.Error.AsError()
		u.observe(ctx, method, start, err)
		return nil, err // the upstream's JSON-RPC error, as it sent it
	}
	u.observe(ctx, method, start, nil)
	return res.Result, nil
}

// failedErr is failed's message as an error.
func (u *Upstream) failedErr(ctx context.Context, err error) error {
	res := u.failed(ctx, err)
	if len(res.Content) > 0 {
		if t, ok := res.Content[0].(mcp.TextContent); ok {
			return errors.New(t.Text)
		}
	}
	return err
}

// Read forwards a resources/read to the upstream server (as Route chose).
func (p *Pool) Read(ctx context.Context, server string, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	u := p.upstream(server)
	if u == nil {
		return nil, fmt.Errorf("no upstream %s", server)
	}
	return u.readResource(ctx, req)
}
