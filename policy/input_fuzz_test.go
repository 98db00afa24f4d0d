package policy_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/toolgate/toolgate/policy"
)

// FuzzDecideArguments: arbitrary JSON objects as the arguments of a
// tools/call, decided by the default policy (rego/) for a principal that
// may see and call image_generation. Never panics; every decision has an ID;
// an allowed call is visible; image_generation is allowed exactly when its
// prompt is absent, null, or a string of at most 1000 characters (data.json,
// arguments.prompt.max_length); add (an empty rule) is allowed whatever its
// arguments; the decision cache changes nothing.
func FuzzDecideArguments(f *testing.F) {
	catalog := []policy.Tool{
		{Name: "add", Description: "Add two numbers"},
		{Name: "image_generation", Description: "Generate an image", Annotations: map[string]any{"openWorldHint": true}},
		{Name: "whoami", Description: "Who am I"},
	}
	src := policy.Source{Dir: defaultDir}
	uncached := mustNew(f, src, catalog, policy.Options{CacheSize: -1})
	cached := mustNew(f, src, catalog, policy.Options{CacheSize: 0}) // 0: the default size
	p := user([]string{"image_generation"}, []string{"images:write"})
	ctx := context.Background()

	for _, seed := range []string{
		`{}`,
		`{"prompt":"a cat"}`,
		`{"prompt":null}`,
		`{"prompt":42}`,
		`{"prompt":["a"],"a":1,"b":2}`,
		`{"prompt":{"prompt":"x"}}`,
		`{"a":1.5,"b":-2e300}`,
		`{"prompt":"\u00e9\u00e9\u00e9","extra":[null,true,{}]}`,
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var args map[string]any
		if err := json.Unmarshal(data, &args); err != nil || args == nil {
			t.Skip("not a JSON object")
		}
		for _, tool := range []string{"image_generation", "add"} {
			d := uncached.Decide(ctx, p, tool, args)
			if d.ID == "" {
				t.Errorf("%s: decision without an ID", tool)
			}
			if d.Err != nil {
				t.Fatalf("%s: evaluation error: %v", tool, d.Err)
			}
			if d.Allowed && !d.Visible {
				t.Errorf("%s: allowed but not visible", tool)
			}
			if !d.Visible {
				t.Errorf("%s: not visible to a principal with permission image_generation", tool)
			}
			if !d.Allowed && d.Reason == "" {
				t.Errorf("%s: denied without a reason", tool)
			}
			want := true
			if tool == "image_generation" {
				switch prompt := args["prompt"].(type) {
				case nil: // absent or null: the rule does not require it
				case string:
					want = utf8.RuneCountInString(prompt) <= 1000
				default:
					want = false
				}
			}
			if d.Allowed != want {
				t.Errorf("%s%s: allowed = %v (reason %q), want %v", tool, data, d.Allowed, d.Reason, want)
			}
			if len(d.RequiredScopes) != 0 {
				t.Errorf("%s: required_scopes %q for a principal that has the call scope", tool, d.RequiredScopes)
			}

			// Cached: a miss, then a hit, both the same as uncached.
			for i := range 2 {
				c := cached.Decide(ctx, p, tool, args)
				if c.ID == "" || c.ID == d.ID {
					t.Errorf("%s: cached decision %d has ID %q (uncached %q)", tool, i, c.ID, d.ID)
				}
				if c.Err != nil || c.Allowed != d.Allowed || c.Visible != d.Visible || c.Reason != d.Reason || !slices.Equal(c.RequiredScopes, d.RequiredScopes) {
					t.Errorf("%s: cached decision %d = {allowed %v visible %v reason %q scopes %q err %v}, uncached {allowed %v visible %v reason %q scopes %q}",
						tool, i, c.Allowed, c.Visible, c.Reason, c.RequiredScopes, c.Err, d.Allowed, d.Visible, d.Reason, d.RequiredScopes)
				}
			}
		}
	})
}
