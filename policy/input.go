package policy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

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
}

// catalogInput is the catalog as policy input (input.tools), and each
// tool's annotations (input.tool.annotations), parsed once.
type catalogInput struct {
	tools  ast.Value
	annots map[string]ast.Value
}

func newCatalogInput(catalog []Tool) (catalogInput, error) {
	c := catalogInput{annots: make(map[string]ast.Value, len(catalog))}
	list := make([]any, 0, len(catalog))
	for _, t := range catalog {
		ann := t.Annotations
		if ann == nil {
			ann = map[string]any{}
		}
		list = append(list, map[string]any{"name": t.Name, "description": t.Description, "annotations": ann})
		v, err := ast.InterfaceToValue(ann)
		if err != nil {
			return c, fmt.Errorf("tool %s: annotations: %w", t.Name, err)
		}
		c.annots[t.Name] = v
	}
	var err error
	c.tools, err = ast.InterfaceToValue(list)
	return c, err
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
	v, err := parseArguments(args)
	if err != nil {
		return nil, err
	}
	arguments := ast.Value(ast.NewObject())
	if v != nil {
		if arguments, err = ast.InterfaceToValue(v); err != nil {
			return nil, err
		}
	}
	items = append(items, ast.Item(ast.InternedTerm("arguments"), ast.NewTerm(arguments)))
	return ast.NewObject(items...), nil
}

// items are the fields of the input but the arguments.
func (c catalogInput) items(p *idp.Principal, action, tool string) ([][2]*ast.Term, error) {
	principal, err := ast.InterfaceToValue(p.Input())
	if err != nil {
		return nil, err
	}
	items := [][2]*ast.Term{
		ast.Item(ast.InternedTerm("principal"), ast.NewTerm(principal)),
		ast.Item(ast.InternedTerm("action"), ast.StringTerm(action)),
		ast.Item(ast.InternedTerm("tools"), ast.NewTerm(c.tools)),
	}
	if action == ActionCall {
		ann, ok := c.annots[tool]
		if !ok {
			ann = ast.NewObject()
		}
		items = append(items, ast.Item(ast.InternedTerm("tool"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(tool)),
			ast.Item(ast.InternedTerm("annotations"), ast.NewTerm(ann)),
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
