package server_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
)

// The answer a principal must get, under one policy.
type expectation struct {
	tools      []string // tools/list, sorted
	image      string   // "hidden", "step-up" or "allowed"
	whoamiSeen bool
}

// Under concurrent load from principals of all three providers, sessions
// opening and closing, and a policy reload in the middle, every answer is
// exactly the one meant for that principal under the policy in force: no
// answer meant for another principal, no error but the expected denials.
func TestStressNoLeakAcrossPrincipals(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	const clients, rounds = 64, 4
	tenants := map[string]*idptest.Tenant{}
	var list []*idptest.Tenant
	for _, p := range providers {
		tenants[p] = idptest.NewTenant(t, p)
		list = append(list, tenants[p])
	}
	// Its subject is who gets which answer, not speed: a machine loaded by
	// 64 clients under the race detector must not turn the bound on one
	// evaluation (a denial, fail closed) into a mismatch.
	g := startGate(t, list, func(c *config.Config, _ *server.Options) { c.Policy.EvalTimeout = time.Minute })
	aud := []string{g.Config.ResourceURL()}

	type principal struct {
		sub, token string
		before     expectation // default policy
		after      expectation // after the reload: whoami is gone
	}
	kinds := []struct {
		name         string
		image, scope bool
	}{{"plain", false, false}, {"image", true, false}, {"image+scope", true, true}}
	principals := make([]principal, clients)
	for i := range principals {
		provider := providers[i%len(providers)]
		kind := kinds[(i/len(providers))%len(kinds)]
		sub := fmt.Sprintf("stress-%s-%s-%02d", provider, kind.name, i)
		c := idptest.Claims{Sub: sub, Audience: aud}
		if kind.scope {
			c.Scopes = []string{"images:write"}
		}
		if kind.image {
			c = imageClaims(provider, c)
		}
		p := principal{sub: sub, token: tenants[provider].Token(c)}
		p.before = expectation{tools: []string{"add", "whoami"}, image: "hidden", whoamiSeen: true}
		p.after = expectation{tools: []string{"add"}, image: "hidden"}
		if kind.image {
			p.before.tools = []string{"add", "image_generation", "whoami"}
			p.after.tools = []string{"add", "image_generation"}
			p.before.image, p.after.image = "step-up", "step-up"
			if kind.scope {
				p.before.image, p.after.image = "allowed", "allowed"
			}
		}
		principals[i] = p
	}

	var requests, mismatches atomic.Int64
	var reloaded atomic.Bool // set once the new revision is in force
	var mu sync.Mutex
	var problems []string
	fail := func(format string, a ...any) {
		mismatches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, a...))
		}
	}
	// matches reports whether an answer is what p should see under a policy
	// that may have been in force when the request was sent: once the reload
	// had happened, only the new one.
	matches := func(p principal, sentAfterReload bool, check func(expectation) bool) bool {
		return check(p.after) || (!sentAfterReload && check(p.before))
	}

	var wg sync.WaitGroup
	halfway := make(chan struct{})
	var done atomic.Int32
	for i, p := range principals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for r := range rounds {
				if r == rounds/2 && done.Add(1) == clients {
					close(halfway)
				}
				c, err := g.dial(p.token)
				requests.Add(2)
				if err != nil {
					fail("%s: connect: %v", p.sub, err)
					continue
				}
				sent := reloaded.Load()
				names := sorted(toolNames(t, c))
				requests.Add(1)
				if !matches(p, sent, func(e expectation) bool { return slices.Equal(names, e.tools) }) {
					fail("%s: tools/list %v", p.sub, names)
				}
				a, b := rng.IntN(1000), rng.IntN(1000)
				res, err := callTool(c, "add", map[string]any{"a": a, "b": b})
				requests.Add(1)
				if err != nil || text(res) != fmt.Sprint(a+b) {
					fail("%s: add(%d,%d) = %q %v", p.sub, a, b, text(res), err)
				}
				sent = reloaded.Load()
				res, err = callTool(c, "whoami", nil)
				requests.Add(1)
				var who map[string]any
				if err == nil {
					if jerr := json.Unmarshal([]byte(text(res)), &who); jerr != nil || who["sub"] != p.sub {
						fail("%s: whoami answered %q: another principal's identity or garbage", p.sub, text(res))
					}
				}
				if !matches(p, sent, func(e expectation) bool { return e.whoamiSeen == (err == nil) }) {
					fail("%s: whoami err=%v", p.sub, err)
				}
				sent = reloaded.Load()
				res, err = callTool(c, "image_generation", map[string]any{"prompt": p.sub})
				requests.Add(1)
				got := "allowed"
				switch {
				case err != nil && strings.Contains(err.Error(), "not found"):
					got = "hidden"
				case err != nil && strings.Contains(err.Error(), "insufficient_scope"):
					got = "step-up"
				case err != nil || res.IsError:
					got = fmt.Sprintf("error %v %q", err, text(res))
				}
				if !matches(p, sent, func(e expectation) bool { return e.image == got }) {
					fail("%s: image_generation: %s", p.sub, got)
				}
				c.Close() // DELETE: the session ends
				requests.Add(1)
			}
		}()
	}
	<-halfway
	before := g.srv.Policy().Revision()
	g.writePolicyFile("data.json", `{"tool_rules": {"add": {}, "image_generation": {"any_of": {"permissions": ["image_generation"]}, "call_scopes": ["images:write"]}},
		"role_permissions": {"admin": ["image_generation"], "image-creator": ["image_generation"]}}`)
	waitFor(t, "the reload", func() bool { return g.srv.Policy().Revision() != before })
	reloaded.Store(true)
	wg.Wait()

	t.Logf("%d requests from %d principals of %d providers, %d sessions, one reload: %d mismatches",
		requests.Load(), clients, len(providers), clients*rounds, mismatches.Load())
	for _, p := range problems {
		t.Error(p)
	}
}
