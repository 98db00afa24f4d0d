package policy_test

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/toolgate/toolgate/idp"
)

// TestSchemaDeclaresThePrincipal: input.schema.json, which closes the input
// to the contract's fields at compile time, names exactly the fields of the
// principal idp hands to policies, so that a field added to one is not
// missing from the other.
func TestSchemaDeclaresThePrincipal(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("input.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Principal struct {
				Properties map[string]any `json:"properties"`
			} `json:"principal"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	declared := slices.Sorted(maps.Keys(schema.Properties.Principal.Properties))
	handed := slices.Sorted(maps.Keys((&idp.Principal{}).Input()))
	if !slices.Equal(declared, handed) {
		t.Errorf("input.schema.json declares the principal's fields %v, idp hands policies %v", declared, handed)
	}
}
