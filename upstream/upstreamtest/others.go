package upstreamtest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// The upstream's prompts and resources (issue 16): prompts greet (argument
// name, completed from a list of names) and secret; resources
// test://doc/readme (text with _meta), test://doc/logo (a blob) and
// test://secret/key; the template test://items/{id} (id completed).
const (
	ReadmeURI   = "test://doc/readme"
	ReadmeText  = "Read me: \u00e9t\u00e9 <b>&</b>\n"
	LogoURI     = "test://doc/logo"
	LogoBlob    = "iVBORw0KGgo="
	SecretURI   = "test://secret/key"
	ItemsURI    = "test://items/{id}"
	GreetPrompt = "greet"
)

// Names are what the greet prompt's argument completes from.
var Names = []string{"Alice", "Albert", "Bob"}

func addPromptsAndResources(s *mcpserver.MCPServer) {
	s.AddPrompt(mcp.NewPrompt(GreetPrompt, mcp.WithPromptDescription("Greets someone."),
		mcp.WithArgument("name", mcp.ArgumentDescription("who"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("A greeting", []mcp.PromptMessage{
				mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Hello, "+req.Params.Arguments["name"]+"!")),
				mcp.NewPromptMessage(mcp.RoleAssistant, mcp.NewEmbeddedResource(mcp.TextResourceContents{URI: ReadmeURI, MIMEType: "text/plain", Text: ReadmeText})),
			}), nil
		})
	s.AddPrompt(mcp.NewPrompt("secret", mcp.WithPromptDescription("A prompt few may see.")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("secret", []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("the secret"))}), nil
		})
	s.AddResource(mcp.NewResource(ReadmeURI, "readme", mcp.WithMIMEType("text/plain"), mcp.WithResourceDescription("The readme.")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: ReadmeText,
				Meta: map[string]any{"upstream": "upstreamtest"}}}, nil
		})
	s.AddResource(mcp.NewResource(LogoURI, "logo", mcp.WithMIMEType("image/png")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.BlobResourceContents{URI: req.Params.URI, MIMEType: "image/png", Blob: LogoBlob}}, nil
		})
	s.AddResource(mcp.NewResource(SecretURI, "secret key"),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: "s3cr3t"}}, nil
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate(ItemsURI, "item", mcp.WithTemplateMIMEType("text/plain")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			id, _ := req.Params.Arguments["id"].([]string)
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain",
				Text: fmt.Sprintf("item %s", strings.Join(id, ","))}}, nil
		})
}

// completions completes greet's name from Names, and an item's id with
// the value typed twice.
type completions struct{}

func (completions) CompletePromptArgument(_ context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	if prompt != GreetPrompt || arg.Name != "name" {
		return nil, fmt.Errorf("no completion for %s.%s", prompt, arg.Name)
	}
	var out []string
	for _, n := range Names {
		if strings.HasPrefix(n, arg.Value) {
			out = append(out, n)
		}
	}
	return &mcp.Completion{Values: out}, nil
}

func (completions) CompleteResourceArgument(_ context.Context, uri string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	return &mcp.Completion{Values: []string{arg.Value + arg.Value}}, nil
}

// LiveURI is a resource whose content changes (Update), and whose
// subscribers are told (MCP server/resources, "Subscriptions").
const LiveURI = "test://live/counter"

// live is the live resource's state and the upstream's subscriptions:
// mcp-go's server acknowledges resources/subscribe but keeps no record.
type live struct {
	mu    sync.Mutex
	count int
	subs  map[string]map[string]bool // URI -> subscribed session ids
}

func newLive() *live { return &live{subs: map[string]map[string]bool{}} }

func (l *live) hooks() *mcpserver.Hooks {
	h := &mcpserver.Hooks{}
	h.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		if cs := mcpserver.ClientSessionFromContext(ctx); cs != nil {
			l.mu.Lock()
			if l.subs[req.Params.URI] == nil {
				l.subs[req.Params.URI] = map[string]bool{}
			}
			l.subs[req.Params.URI][cs.SessionID()] = true
			l.mu.Unlock()
		}
	})
	h.AddAfterUnsubscribe(func(ctx context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		if cs := mcpserver.ClientSessionFromContext(ctx); cs != nil {
			l.mu.Lock()
			delete(l.subs[req.Params.URI], cs.SessionID())
			l.mu.Unlock()
		}
	})
	return h
}

func (l *live) add(s *mcpserver.MCPServer) {
	s.AddResource(mcp.NewResource(LiveURI, "counter", mcp.WithMIMEType("text/plain")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: fmt.Sprintf("count %d", l.count)}}, nil
		})
}

// Update changes the live resource's content and sends
// notifications/resources/updated to each session subscribed to it.
func (s *Server) Update() {
	s.live.mu.Lock()
	s.live.count++
	ids := make([]string, 0, len(s.live.subs[LiveURI]))
	for id := range s.live.subs[LiveURI] {
		ids = append(ids, id)
	}
	s.live.mu.Unlock()
	for _, id := range ids {
		_ = s.mcp.SendNotificationToSpecificClient(id, string(mcp.MethodNotificationResourceUpdated), map[string]any{"uri": LiveURI})
	}
}

// Subscribers is how many of the upstream's sessions are subscribed to uri.
func (s *Server) Subscribers(uri string) int {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return len(s.live.subs[uri])
}

// AddResource adds a resource whose content is text, and tells the
// connected sessions with notifications/resources/list_changed (MCP
// server/resources, "List Changed Notification"), as mcp-go does.
func (s *Server) AddResource(uri, text string) {
	s.mcp.AddResource(mcp.NewResource(uri, uri, mcp.WithMIMEType("text/plain")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: text}}, nil
		})
}

// AddPrompt adds a prompt without arguments, and tells the connected
// sessions with notifications/prompts/list_changed.
func (s *Server) AddPrompt(name string) {
	s.mcp.AddPrompt(mcp.NewPrompt(name, mcp.WithPromptDescription("Added while running.")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult(name, []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(name))}), nil
		})
}
