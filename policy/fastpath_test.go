package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

// The fast path (decisions that hold for every argument value cached
// without the arguments, the others with them, residuals of partial
// evaluation for calls and for a new principal's list) must decide exactly
// as a plain evaluation of the policy with no cache: for the default policy and
// every example, over generated principals, the tools of the examples (and
// one of no catalog), and arguments that keep and break the examples'
// argument rules.

// fastPathCatalog holds every tool the policies of rego/ and examples/ name.
var fastPathCatalog = []policy.Tool{
	{Name: "add", Description: "Add two numbers"},
	{Name: "whoami", Description: "Who am I"},
	{Name: "image_generation", Description: "Generate an image", Annotations: map[string]any{"openWorldHint": true}},
	{Name: "list_okrs", Description: "List OKRs"},
	{Name: "update_kr", Description: "Update a key result"},
	{Name: "fs_read_text_file", Description: "Read a file", Annotations: map[string]any{"readOnlyHint": true}, Server: "fs"},
	{Name: "fs_write_file", Description: "Write a file", Annotations: map[string]any{"readOnlyHint": false}, Server: "fs"},
}

// fastPathTools are the tools called: the catalog's and one it lacks.
var fastPathTools = append(catalogNamesOf(fastPathCatalog), "not_in_catalog")

func catalogNamesOf(catalog []policy.Tool) []string {
	out := make([]string, len(catalog))
	for i, t := range catalog {
		out[i] = t.Name
	}
	return out
}

// fastPathArguments are call arguments as a request carries them.
var fastPathArguments = []string{
	``, `null`, `{}`,
	`{"prompt":"a cat"}`, `{"prompt":""}`, `{"prompt":null}`, `{"prompt":5}`, `{"prompt":["a"]}`,
	`{"prompt":"` + strings.Repeat("é", 101) + `"}`,
	`{"prompt":"` + strings.Repeat("a", 1001) + `"}`,
	`{"prompt":"` + strings.Repeat("a", 2001) + `"}`,
	`{"a":1,"b":2}`, `{"a":2000000,"b":-1}`, `{"a":-1000001,"b":3}`, `{"a":"1","b":2}`, `{"b":2}`,
	`{"a":1e13,"b":1}`, `{"a":1.5,"b":null}`,
	`{"organization_id":"org-1"}`, `{"organization_id":"org_other"}`,
	`{"kr":{"organization_id":"org_other","value":3}}`, `{"list":[{"organization_id":"org-1"}]}`,
	`{"width":0,"label":"too long a label"}`,
	// Not objects: ErrArgumentsInvalid.
	`[1]`, `"prompt"`, `42`, `{"prompt":`, `{"a":1e400}`,
}

// Words the example policies and data grant on.
var (
	fastPathProviders   = append(slices.Clone(idp.Providers), idp.ProviderAnonymous, "")
	fastPathOrgs        = []string{"", "org-1", "org_acme", "org_globex", "org_initech", "org_01HRACMEACMEACMEACMEACMEAC", "org_01HRGLOBEXGLOBEXGLOBEXGLOB"}
	fastPathSubs        = []string{"user-1", "user_01JQALICEALICEALICEALICEA"}
	fastPathPermissions = []string{"image_generation", "tools:read", "tools:write", "fs:read", "fs:write"}
	fastPathScopes      = []string{"images:write", "images:read", "images:admin", "mcp:admin", "mcp:tools:call", "read:okrs", "manage:krs", "openid"}
	fastPathRoles       = []string{"admin", "image-creator", "member"}
)

// fastPathPrincipal makes a principal from the bits of n: its provider,
// organisation, subject, and a subset of each list of words.
func fastPathPrincipal(n uint64) *idp.Principal {
	pick := func(words []string) string {
		w := words[n%uint64(len(words))]
		n /= uint64(len(words))
		return w
	}
	subset := func(words []string) []string {
		out := []string{}
		for _, w := range words {
			if n&1 == 1 {
				out = append(out, w)
			}
			n >>= 1
		}
		return out
	}
	provider := pick(fastPathProviders)
	if provider == idp.ProviderAnonymous {
		return idp.Anonymous()
	}
	p := &idp.Principal{Provider: provider, OrgID: pick(fastPathOrgs), Sub: pick(fastPathSubs), Iss: "https://issuer.example/"}
	p.Permissions = subset(fastPathPermissions)
	p.Scopes = subset(fastPathScopes)
	p.Roles = subset(fastPathRoles)
	p.Claims = map[string]any{"sub": p.Sub}
	return p
}

// everyGrant is a principal of provider, in an organisation the example
// data names, who holds every permission, scope and role the policies
// grant on.
func everyGrant(provider string) *idp.Principal {
	return &idp.Principal{Provider: provider, Sub: "user-1", Iss: "https://issuer.example/", OrgID: "org_acme",
		Permissions: fastPathPermissions, Scopes: fastPathScopes, Roles: fastPathRoles, Claims: map[string]any{"sub": "user-1"}}
}

// otherUser is p's grants in a new token of another user: another sub,
// and claims of their own.
func otherUser(p *idp.Principal) *idp.Principal {
	if p.Provider == idp.ProviderAnonymous {
		return p
	}
	other := *p
	other.Sub = fastPathSubs[(slices.Index(fastPathSubs, p.Sub)+1)%len(fastPathSubs)]
	other.Claims = map[string]any{"sub": other.Sub, "jti": "another token"}
	return &other
}

// fastPathPolicies are rego/, every examples/*/, and testdata/limits,
// whose limits read the arguments.
func fastPathPolicies(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("../examples/*/policy.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	dirs := []string{defaultDir, "testdata/limits"}
	for _, f := range files {
		dirs = append(dirs, filepath.Dir(f))
	}
	return dirs
}

// decidesOnArguments are the policies (by directory name) whose decisions
// of permitted calls read the arguments: argument limits, limits keyed by
// an argument, the organisation of the arguments.
var decidesOnArguments = map[string]bool{"rego": true, "limits": true, "argument-rules": true, "stytch-b2b": true}

// enginePair is one policy compiled twice: with the default caches (the
// fast path) and with none (a full evaluation for every call).
type enginePair struct {
	dir        string
	fast, full *policy.Engine
}

func newEnginePairs(t testing.TB) []enginePair {
	var out []enginePair
	for _, dir := range fastPathPolicies(t) {
		src := policy.Source{Dir: dir}
		fast := mustNew(t, src, fastPathCatalog, policy.Options{})
		// Lists are asked once the list residual is made, if the policy
		// has one (the default policy must).
		if !fast.WaitListResidual(context.Background()) && dir == defaultDir {
			t.Fatalf("%s: no list residual", dir)
		}
		out = append(out, enginePair{dir, fast, mustNew(t, src, fastPathCatalog, policy.Options{CacheSize: -1})})
	}
	return out
}

// agreeOnList lists the tools for p on both engines and reports any
// difference.
func (ep enginePair) agreeOnList(t testing.TB, p *idp.Principal) {
	t.Helper()
	got, gotErr := ep.fast.Visible(context.Background(), p)
	want, wantErr := ep.full.Visible(context.Background(), p)
	if g, w := names(got), names(want); !slices.Equal(g, w) || (gotErr != nil) != (wantErr != nil) {
		t.Errorf("%s: %s lists:\nfast path %v (%v)\nfull      %v (%v)", ep.dir, p.Input(), g, gotErr, w, wantErr)
	}
}

// agree decides one call on both engines and reports any difference.
func (ep enginePair) agree(t testing.TB, p *idp.Principal, tool, args string) {
	t.Helper()
	ctx := context.Background()
	got := ep.fast.DecideRaw(ctx, p, tool, []byte(args))
	want := ep.full.DecideRaw(ctx, p, tool, []byte(args))
	if summary(got) != summary(want) {
		t.Errorf("%s: %s calls %s with %.60s:\nfast path %s\nfull       %s", ep.dir, p.Input(), tool, args, summary(got), summary(want))
	}
}

func summary(d policy.Decision) string {
	return fmt.Sprintf("visible=%v allowed=%v reason=%q scopes=%q limits=%v err=%v", d.Visible, d.Allowed, d.Reason, d.RequiredScopes, d.Limits, d.Err != nil)
}

func TestFastPathAgreesWithFullEvaluation(t *testing.T) {
	t.Parallel()
	for _, ep := range newEnginePairs(t) {
		t.Run(filepath.Base(ep.dir), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(17, 1))
			principals := 8
			if testing.Short() {
				principals = 3
			}
			// Generated principals, and two who hold every grant the
			// policies name (one of each provider family the examples
			// serve), so that every policy's permitted calls are asked.
			ps := []*idp.Principal{everyGrant("auth0"), everyGrant("stytch")}
			for range principals {
				ps = append(ps, fastPathPrincipal(r.Uint64()))
			}
			for _, p := range ps {
				ep.agreeOnList(t, p)
				for _, tool := range fastPathTools {
					// Every argument value in a row, in a new order for each
					// tool, so that a decision cached for some arguments is
					// asked for with others.
					for _, i := range r.Perm(len(fastPathArguments)) {
						ep.agree(t, p, tool, fastPathArguments[i])
					}
				}
				// The same grants in another user's new token: the caches
				// key it like p where the policy reads neither.
				other := otherUser(p)
				for _, tool := range fastPathTools {
					ep.agree(t, other, tool, fastPathArguments[r.IntN(len(fastPathArguments))])
				}
			}
			// The policies that decide permitted calls on their arguments
			// must have been held to full evaluations through residuals,
			// not only through the full evaluations a residual falls back to.
			if decidesOnArguments[filepath.Base(ep.dir)] && policy.ResidualQueries(ep.fast) == 0 {
				t.Errorf("%s: no call was decided by a residual of partial evaluation", ep.dir)
			}
		})
	}
}

// FuzzFastPathAgrees: the same comparison for arbitrary principals (from
// bits), their lists, tools and two argument values asked in a row.
func FuzzFastPathAgrees(f *testing.F) {
	pairs := newEnginePairs(f)
	for i, a := range fastPathArguments {
		f.Add(uint8(i), uint64(i)*0x9e3779b97f4a7c15, uint8(i), a, fastPathArguments[(i+1)%len(fastPathArguments)])
	}
	f.Fuzz(func(t *testing.T, policyIndex uint8, principal uint64, toolIndex uint8, args1, args2 string) {
		ep := pairs[int(policyIndex)%len(pairs)]
		p := fastPathPrincipal(principal)
		tool := fastPathTools[int(toolIndex)%len(fastPathTools)]
		ep.agreeOnList(t, p)
		ep.agree(t, p, tool, args1)
		ep.agree(t, p, tool, args2)
		ep.agree(t, otherUser(p), tool, args2)
	})
}
