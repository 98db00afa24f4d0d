package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/policy"
)

// The contract's limits rule (docs/policy-contract.md, "limits"): a set of
// {"key", "rate", "per"} objects (and an optional "name"), read for an
// allowed call and part of its decision.

const limitsPolicy = `package mcp.authz

visible_tools := {"add", "image_generation"}

allow if {
	input.action == "tools/call"
	not input.arguments.deny
}

limits contains {"key": concat(" ", ["principal", input.principal.iss, input.principal.sub]), "rate": 10, "per": "1m", "name": "per principal"} if input.tool.name == "image_generation"

limits contains {"key": concat(" ", ["org", input.principal.org_id]), "rate": 500, "per": "24h"} if input.tool.name == "image_generation"

limits contains {"key": sprintf("size %v", [input.arguments.size]), "rate": 2, "per": "1s"} if input.arguments.size
`

func TestDecisionCarriesLimits(t *testing.T) {
	t.Parallel()
	for _, cache := range []int{0, -1} { // the default caches, and none
		e := mustNew(t, policy.Source{Dir: policyDir(t, map[string]string{"policy.rego": limitsPolicy})}, catalogOf("add", "image_generation"), policy.Options{CacheSize: cache})
		ctx := context.Background()
		p := user(nil, nil)
		want := []policy.Limit{
			{Key: "org org-1", Rate: 500, Per: 24 * time.Hour},
			{Key: "principal https://issuer.example/ user-1", Rate: 10, Per: time.Minute, Name: "per principal"},
		}
		for range 2 { // the second from the cache
			d := e.DecideRaw(ctx, p, "image_generation", []byte(`{}`))
			if d.Err != nil || !d.Allowed {
				t.Fatalf("cache %d: %+v", cache, d)
			}
			if !equalLimits(d.Limits, want) {
				t.Errorf("cache %d: limits %+v, want %+v", cache, d.Limits, want)
			}
			d.Limits[0].Key = "changed by a caller"
		}
		if d := e.DecideRaw(ctx, p, "add", []byte(`{}`)); d.Err != nil || len(d.Limits) != 0 {
			t.Errorf("cache %d: a call without limits: %+v", cache, d)
		}
		// Limits that read the arguments are decided with them.
		for _, size := range []string{"1", "2", "1"} {
			d := e.DecideRaw(ctx, p, "add", []byte(`{"size":`+size+`}`))
			if len(d.Limits) != 1 || d.Limits[0].Key != "size "+size {
				t.Errorf("cache %d: size %s: limits %+v", cache, size, d.Limits)
			}
		}
		// A denied call carries none.
		if d := e.DecideRaw(ctx, p, "image_generation", []byte(`{"deny":true}`)); d.Allowed || len(d.Limits) != 0 {
			t.Errorf("cache %d: a denied call: %+v", cache, d)
		}
	}
}

func equalLimits(a, b []policy.Limit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A limits rule whose value is wrong denies the call with an evaluation
// error that says what is wrong (deny on doubt); one whose type the
// compiler already knows to be wrong is refused at load.
func TestMalformedLimitsDeny(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, rule, want string }{
		{"not a set", `limits := data.limits_value`, "limits must be a set of objects"},
		{"a set of strings", `limits := {x | some x in data.strings}`, "limits must be a set of objects"},
		{"no key", `limits := {{"rate": 1, "per": "1m"}}`, `limit {"per":"1m","rate":1}: key must be a non-empty string`},
		{"empty key", `limits := {{"key": "", "rate": 1, "per": "1m"}}`, "key must be a non-empty string"},
		{"rate zero", `limits := {{"key": "k", "rate": 0, "per": "1m"}}`, "rate must be a positive integer"},
		{"rate fraction", `limits := {{"key": "k", "rate": 1.5, "per": "1m"}}`, "rate must be a positive integer"},
		{"rate string", `limits := {{"key": "k", "rate": "10", "per": "1m"}}`, "rate must be a positive integer"},
		{"per not a duration", `limits := {{"key": "k", "rate": 1, "per": "a minute"}}`, "per must be a positive duration"},
		{"per zero", `limits := {{"key": "k", "rate": 1, "per": "0s"}}`, "per must be a positive duration"},
		{"per a number", `limits := {{"key": "k", "rate": 1, "per": 60}}`, "per must be a positive duration"},
		{"unknown field", `limits := {{"key": "k", "rate": 1, "per": "1m", "burst": 3}}`, `unknown field "burst"`},
		{"name not a string", `limits := {{"key": "k", "rate": 1, "per": "1m", "name": 3}}`, "name must be a string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := policyDir(t, map[string]string{
				"policy.rego": "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\n" + c.rule + "\n",
				"data.json":   `{"limits_value": [{"key": "k", "rate": 1, "per": "1m"}], "strings": ["a"]}`,
			})
			e := mustNew(t, policy.Source{Dir: dir}, catalogOf("add"), policy.Options{})
			d := e.DecideRaw(context.Background(), user(nil, nil), "add", []byte(`{}`))
			if d.Allowed || d.Err == nil || !strings.Contains(d.Err.Error(), c.want) {
				t.Errorf("got allowed=%v err=%v, want a denial with an error containing %q", d.Allowed, d.Err, c.want)
			}
		})
	}
}

func TestLimitsOfAKnownWrongTypeRefusedAtLoad(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{"policy.rego": "package mcp.authz\nvisible_tools := {\"add\"}\nallow := true\nlimits := \"10 a minute\"\n"})
	_, err := policy.New(policy.Source{Dir: dir}, catalogOf("add"), policy.Options{Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "policy.rego:4") || !strings.Contains(err.Error(), "limits must be a set of objects") {
		t.Fatalf("New: %v, want limits refused at its line", err)
	}
}
