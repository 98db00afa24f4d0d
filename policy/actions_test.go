package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// actionsDir is the default policy with prompt_rules and resource_rules.
func actionsDir(t *testing.T, data string) string {
	t.Helper()
	files := map[string]string{"data.json": data}
	for _, name := range []string{"policy.rego", "prompts_resources.rego"} {
		b, err := os.ReadFile(filepath.Join(defaultDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	return policyDir(t, files)
}

const actionsData = `{
  "tool_rules": {"add": {}, "whoami": {}, "image_generation": {}},
  "prompt_rules": {"ev_simple": {"any_of": {"roles": ["reader", "editor"]}}, "ev_args": {"any_of": {"roles": ["editor"]}}},
  "resource_rules": {
    "demo://static/": {"any_of": {"roles": ["reader", "editor"]}},
    "demo://": {"any_of": {"roles": ["editor"]}}
  }
}`

var (
	actionPrompts   = []policy.Prompt{{Name: "ev_simple", Server: "ev"}, {Name: "ev_args", Arguments: []string{"city"}, Server: "ev"}}
	actionResources = []policy.Resource{{URI: "demo://static/a", Name: "a", Server: "ev"}, {URI: "demo://private/b", Name: "b", Server: "ev"}}
	actionTemplates = []policy.ResourceTemplate{{URITemplate: "demo://dynamic/{id}", Name: "d", Server: "ev"}}
)

func withRoles(roles ...string) *idp.Principal {
	p := user(nil, nil)
	p.Roles = roles
	return p
}

func TestPromptsAndResourcesFollowTheRules(t *testing.T) {
	t.Parallel()
	e := mustNew(t, policy.Source{Dir: actionsDir(t, actionsData)}, defaultCatalog, policy.Options{DynamicCatalog: true})
	if err := e.SetPromptsAndResources(actionPrompts, actionResources, actionTemplates); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		who                *idp.Principal
		prompts, resources []string
	}{
		{withRoles("reader"), []string{"ev_simple"}, []string{"demo://static/a"}},
		{withRoles("editor"), []string{"ev_args", "ev_simple"}, []string{"demo://dynamic/{id}", "demo://private/b", "demo://static/a"}},
		{user(nil, nil), []string{}, []string{}},
		{idp.Anonymous(), []string{}, []string{}},
	} {
		prompts, err := e.VisiblePrompts(ctx, tc.who)
		if err != nil || !slices.Equal(names(prompts), tc.prompts) {
			t.Errorf("%v: visible prompts %v, %v; want %v", tc.who.Roles, names(prompts), err, tc.prompts)
		}
		resources, err := e.VisibleResources(ctx, tc.who)
		if err != nil || !slices.Equal(names(resources), tc.resources) {
			t.Errorf("%v: visible resources %v, %v; want %v", tc.who.Roles, names(resources), err, tc.resources)
		}
	}
	reader, editor := withRoles("reader"), withRoles("editor")
	for _, tc := range []struct {
		who    *idp.Principal
		action string
		target policy.Target
		allow  bool
	}{
		{reader, policy.ActionPromptGet, policy.Target{Prompt: "ev_simple"}, true},
		{reader, policy.ActionPromptGet, policy.Target{Prompt: "ev_args", Arguments: map[string]any{"city": "x"}}, false},
		{editor, policy.ActionPromptGet, policy.Target{Prompt: "ev_args", Arguments: map[string]any{"city": "x"}}, true},
		{reader, policy.ActionComplete, policy.Target{Prompt: "ev_args"}, false},
		{reader, policy.ActionResourceRead, policy.Target{URI: "demo://static/a"}, true},
		{reader, policy.ActionResourceSubscribe, policy.Target{URI: "demo://static/a"}, true},
		{reader, policy.ActionResourceRead, policy.Target{URI: "demo://private/b"}, false},
		{editor, policy.ActionResourceRead, policy.Target{URI: "demo://private/b"}, true},
		{reader, policy.ActionResourceRead, policy.Target{URI: "demo://dynamic/7", URITemplate: "demo://dynamic/{id}"}, false},
		{editor, policy.ActionResourceRead, policy.Target{URI: "demo://dynamic/7", URITemplate: "demo://dynamic/{id}"}, true},
		// A resource outside the catalog is not visible, whatever the rules.
		{editor, policy.ActionResourceRead, policy.Target{URI: "demo://elsewhere"}, false},
	} {
		d := e.DecideAction(ctx, tc.who, tc.action, tc.target)
		if d.Err != nil || d.Allowed != tc.allow || d.ID == "" || d.Revision == "" {
			t.Errorf("%v %s %+v: %+v; want allow %v", tc.who.Roles, tc.action, tc.target, d, tc.allow)
		}
	}
}

func TestPolicyWithoutPromptOrResourceRulesShowsNone(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{"p.rego": "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\n"})
	e := mustNew(t, policy.Source{Dir: dir}, defaultCatalog, policy.Options{})
	if err := e.SetPromptsAndResources(actionPrompts, actionResources, actionTemplates); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v, err := e.VisiblePrompts(ctx, withRoles("editor")); err != nil || len(v) != 0 {
		t.Errorf("visible prompts %v, %v", v, err)
	}
	if v, err := e.VisibleResources(ctx, withRoles("editor")); err != nil || len(v) != 0 {
		t.Errorf("visible resources %v, %v", v, err)
	}
	// allow := true alone is not enough: the prompt is not visible.
	if d := e.DecideAction(ctx, withRoles("editor"), policy.ActionPromptGet, policy.Target{Prompt: "ev_simple"}); d.Allowed || d.Visible {
		t.Errorf("prompts/get allowed without visible_prompts: %+v", d)
	}
}

func TestVisiblePromptsOfTheWrongTypeFailClosed(t *testing.T) {
	t.Parallel()
	// The type is known only at evaluation (from data): compile-time
	// checks catch the others.
	dir := policyDir(t, map[string]string{"p.rego": "package mcp.authz\nvisible_prompts := data.prompts\nallow := true\n",
		"data.json": `{"prompts": {"ev_simple": 1}}`})
	e := mustNew(t, policy.Source{Dir: dir}, defaultCatalog, policy.Options{})
	_ = e.SetPromptsAndResources(actionPrompts, nil, nil)
	ctx := context.Background()
	if v, err := e.VisiblePrompts(ctx, withRoles("editor")); err == nil || len(v) != 0 {
		t.Errorf("visible prompts %v, %v; want an error and nothing", v, err)
	}
	if d := e.DecideAction(ctx, withRoles("editor"), policy.ActionPromptGet, policy.Target{Prompt: "ev_simple"}); d.Allowed || d.Err == nil {
		t.Errorf("decision %+v; want an error", d)
	}
}

func TestUnknownPromptInputFieldIsACompileError(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{"p.rego": "package mcp.authz\nallow if input.prompt.nmae == \"x\"\n"})
	if _, err := policy.New(policy.Source{Dir: dir}, defaultCatalog, policy.Options{Logger: quietLogger()}); err == nil {
		t.Fatal("input.prompt.nmae compiled")
	}
	dir = policyDir(t, map[string]string{"p.rego": "package mcp.authz\nallow if input.resource.uri_template == \"x\"\nvisible_prompts contains p.name if some p in input.prompts\n"})
	if _, err := policy.New(policy.Source{Dir: dir}, defaultCatalog, policy.Options{Logger: quietLogger()}); err != nil {
		t.Fatalf("the contract's fields do not compile: %v", err)
	}
}

func TestCheckReportsPromptAndResourceRuleMistakes(t *testing.T) {
	t.Parallel()
	dir := actionsDir(t, `{
  "tool_rules": {"add": {}, "whoami": {}, "image_generation": {}},
  "prompt_rules": {"ev_simple": {"any_of": {"role": ["reader"]}}},
  "resource_rules": {"demo://": {"call_scopes": ["x"]}}
}`)
	findings, err := policy.Check(policy.Source{Dir: dir}, defaultCatalog, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findings.Errors() {
		got = append(got, f.String())
	}
	want := []string{
		filepath.Join(dir, "data.json") + `:3: error: prompt_rules.ev_simple: unknown key any_of.role`,
		filepath.Join(dir, "data.json") + `:4: error: resource_rules.demo://: key "call_scopes" applies to tool rules only`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
