package policy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/toolgate/toolgate/idp"
)

//go:embed input.schema.json
var inputSchemaJSON []byte

// inputSchema closes the input to what the contract provides, so that a
// typo such as input.principal.permision is a compile error at its line
// instead of a rule that silently matches nothing.
var inputSchema = func() *ast.SchemaSet {
	var schema any
	if err := json.Unmarshal(inputSchemaJSON, &schema); err != nil {
		panic(err)
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, schema)
	return ss
}()

// The actions of the policy contract.
const (
	ActionList = "tools/list"
	ActionCall = "tools/call"
)

// Tool is what a policy sees of one tool of the catalog.
type Tool struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Annotations map[string]any `json:"annotations"`
	// Server is "builtin" for toolgate's own tools, or the name of the
	// upstream MCP server that serves the tool; "" is taken for "builtin".
	Server string `json:"server"`
	// Digest is an upstream tool's digest ("sha256:<hex>" of its
	// definition, docs/configuration.md "Pinning upstream tools"), ""
	// for a built-in tool.
	Digest string `json:"digest"`
	// Pinned is true when the lock file has Digest for this tool. A
	// built-in tool is always pinned: it changes only with toolgate.
	Pinned bool `json:"pinned"`
}

// Builtin is the Server of toolgate's own tools.
const Builtin = "builtin"

// catalogInput is the catalog in force as policy input. The gateway's
// catalog changes while toolgate serves (Engine.SetCatalog), so it is
// behind an atomic pointer that every copy of the catalogInput shares.
type catalogInput struct{ cur *atomic.Pointer[catalogData] }

// catalogData is one catalog as policy input (input.tools), and each
// tool's annotations and server (input.tool), parsed once.
type catalogData struct {
	tools  ast.Value
	byName map[string]toolInput
}

type toolInput struct {
	annotations ast.Value
	server      *ast.Term
	digest      *ast.Term
	pinned      *ast.Term
}

func newCatalogInput(catalog []Tool) (catalogInput, error) {
	c := catalogInput{cur: new(atomic.Pointer[catalogData])}
	return c, c.set(catalog)
}

// set puts catalog in force.
func (c catalogInput) set(catalog []Tool) error {
	d := &catalogData{byName: make(map[string]toolInput, len(catalog))}
	list := make([]any, 0, len(catalog))
	for _, t := range catalog {
		ann := t.Annotations
		if ann == nil {
			ann = map[string]any{}
		}
		server := t.Server
		if server == "" {
			server = Builtin
		}
		pinned := t.Pinned || server == Builtin
		list = append(list, map[string]any{"name": t.Name, "description": t.Description, "annotations": ann, "server": server,
			"digest": t.Digest, "pinned": pinned})
		v, err := ast.InterfaceToValue(ann)
		if err != nil {
			return fmt.Errorf("tool %s: annotations: %w", t.Name, err)
		}
		d.byName[t.Name] = toolInput{annotations: sorted(v), server: ast.StringTerm(server),
			digest: ast.StringTerm(t.Digest), pinned: ast.BooleanTerm(pinned)}
	}
	var err error
	if d.tools, err = ast.InterfaceToValue(list); err != nil {
		return err
	}
	d.tools = sorted(d.tools)
	c.cur.Store(d)
	return nil
}

// sorted sorts the keys of every object in v now, before v is shared. OPA
// sorts an object's keys lazily, on first need, while (*object).Copy reads
// them without waiting for that: a copy of a catalog term (residualOf
// copies the input it gives partial evaluation) racing an evaluation's
// first sort was a data race. Sorted before the catalog is published, the
// keys are never written again.
func sorted(v ast.Value) ast.Value {
	ast.WalkTerms(v, func(t *ast.Term) bool {
		if obj, ok := t.Value.(ast.Object); ok {
			obj.Foreach(func(*ast.Term, *ast.Term) {})
		}
		return false
	})
	if obj, ok := v.(ast.Object); ok {
		obj.Foreach(func(*ast.Term, *ast.Term) {})
	}
	return v
}

// ErrArgumentsInvalid is a call whose arguments are not a JSON object: the
// client's fault, denied like any failed evaluation but told apart from one.
var ErrArgumentsInvalid = errors.New("arguments must be a JSON object")

// input builds the policy input as an AST value: the catalog is parsed once
// at start, the rest per evaluation.
func (c catalogInput) input(p *idp.Principal, action, tool string, args []byte) (ast.Value, error) {
	items, err := c.items(p, action, tool)
	if err != nil || action != ActionCall {
		return ast.NewObject(items...), err
	}
	arguments, err := argumentsValue(args)
	if err != nil {
		return nil, err
	}
	items = append(items, ast.Item(ast.InternedTerm("arguments"), ast.NewTerm(arguments)))
	return ast.NewObject(items...), nil
}

// argumentsValue is input.arguments of a call: its arguments as the
// request carried them, {} for none.
func argumentsValue(args []byte) (ast.Value, error) {
	v, err := parseArguments(args)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return ast.NewObject(), nil
	}
	return ast.InterfaceToValue(v)
}

// questionItems are the input's principal and action, which every
// question carries, and room for the fields of its kind.
func questionItems(p *idp.Principal, action string) ([][2]*ast.Term, error) {
	principal, err := ast.InterfaceToValue(p.Input())
	if err != nil {
		return nil, err
	}
	return append(make([][2]*ast.Term, 0, 6),
		ast.Item(ast.InternedTerm("principal"), ast.NewTerm(principal)),
		ast.Item(ast.InternedTerm("action"), ast.StringTerm(action))), nil
}

// items are the fields of the input but the arguments.
func (c catalogInput) items(p *idp.Principal, action, tool string) ([][2]*ast.Term, error) {
	d := c.cur.Load()
	items, err := questionItems(p, action)
	if err != nil {
		return nil, err
	}
	items = append(items, ast.Item(ast.InternedTerm("tools"), ast.NewTerm(d.tools)))
	if action == ActionCall {
		t, ok := d.byName[tool]
		if !ok {
			t = toolInput{annotations: ast.NewObject(), server: ast.StringTerm(""), digest: ast.StringTerm(""), pinned: ast.BooleanTerm(false)}
		}
		items = append(items, ast.Item(ast.InternedTerm("tool"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(tool)),
			ast.Item(ast.InternedTerm("annotations"), ast.NewTerm(t.annotations)),
			ast.Item(ast.InternedTerm("server"), t.server),
			ast.Item(ast.InternedTerm("digest"), t.digest),
			ast.Item(ast.InternedTerm("pinned"), t.pinned),
		)))
	}
	return items, nil
}

// parseArguments decodes a call's arguments as the request carried them:
// nil for none (empty or null, given to the policy as {}), else a JSON
// object, or ErrArgumentsInvalid.
func parseArguments(args []byte) (map[string]any, error) {
	args = bytes.TrimSpace(args)
	if len(args) == 0 || string(args) == "null" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(args, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrArgumentsInvalid, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrArgumentsInvalid
	}
	return m, nil
}
