package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/toolgate/toolgate/idp"
)

func TestZZExplore(t *testing.T) {
	cat := []Tool{{Name: "add"}, {Name: "whoami"}, {Name: "image_generation", Annotations: map[string]any{"openWorldHint": true}},
		{Name: "list_okrs"}, {Name: "update_kr"}}
	p := &idp.Principal{Sub: "u", Iss: "i", Provider: "auth0", OrgID: "org-1", Permissions: []string{"image_generation"}, Scopes: []string{"images:write", "read:okrs", "manage:krs"}, Roles: []string{"admin"}}
	for _, c := range []struct{ dir, tool string }{{"../rego", "image_generation"}, {"../examples/argument-rules", "image_generation"}, {"../examples/stytch-b2b", "update_kr"}, {"testdata/limits", "image_generation"}} {
		e, err := New(Source{Dir: c.dir}, cat, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cc := e.cur.Load()
		items, _ := e.in.items(p, ActionCall, c.tool)
		in := ast.NewObject(items...).Copy()
		pq, err := cc.partial.Partial(context.Background(), rego.EvalParsedInput(in))
		fmt.Println("=====", c.dir, err)
		for _, q := range pq.Queries {
			fmt.Println("Q:", q)
		}
		for _, m := range pq.Support {
			fmt.Println("S:", m)
		}
	}
}

func TestZZExplore2(t *testing.T) {
	cat := []Tool{{Name: "add"}, {Name: "whoami"}, {Name: "image_generation", Annotations: map[string]any{"openWorldHint": true}}}
	p := &idp.Principal{Sub: "u", Iss: "i", Provider: "auth0", OrgID: "org-1", Permissions: []string{"image_generation"}, Scopes: []string{"images:write", "read:okrs", "manage:krs"}, Roles: []string{"admin"}}
	e, _ := New(Source{Dir: "../rego"}, cat, Options{})
	cc := e.cur.Load()
	for _, tool := range []string{"add", "nope"} {
		items, _ := e.in.items(p, ActionCall, tool)
		pq, err := cc.partial.Partial(context.Background(), rego.EvalParsedInput(ast.NewObject(items...).Copy()))
		fmt.Println(err, pq.Queries, len(pq.Support))
	}
}
