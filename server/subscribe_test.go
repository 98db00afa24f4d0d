package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// liveData is othersData with the live resource for the permission "live".
func liveData(permission string) string {
	return strings.Replace(othersData, `"resource_rules": {`, `"resource_rules": {
    "test://live/": {"any_of": {"permissions": ["`+permission+`"]}},`, 1)
}

// updates counts the notifications/resources/updated c gets (the
// upstream sends them for its live resource only).
func updates(c *client.Client) *atomic.Int32 {
	return notifications(c, mcp.MethodNotificationResourceUpdated)
}

func subscribe(c *client.Client, uri string) error {
	req := mcp.SubscribeRequest{}
	req.Params.URI = uri
	return c.Subscribe(context.Background(), req)
}

func unsubscribe(c *client.Client, uri string) error {
	req := mcp.UnsubscribeRequest{}
	req.Params.URI = uri
	return c.Unsubscribe(context.Background(), req)
}

// Subscriptions are decided like reads and forwarded on the principal's
// upstream session; an update reaches only the sessions subscribed whose
// principal may read the resource at that moment; unsubscribing, or the
// session's end, stops it, and the upstream is unsubscribed with the
// principal's last subscription.
func TestResourceUpdatesReachOnlySubscribersThatMayRead(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(liveData("live")), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	aud := []string{g.Config.ResourceURL()}
	aliceTok := tn.Token(idptest.Claims{Sub: "alice", Audience: aud, Permissions: []string{"live"}})
	bobTok := tn.Token(idptest.Claims{Sub: "bob", Audience: aud})
	carolTok := tn.Token(idptest.Claims{Sub: "carol", Audience: aud, Permissions: []string{"live", "keep"}})
	alice, _ := listener(t, g, aliceTok)
	bob, _ := listener(t, g, bobTok)
	carol1, _ := listener(t, g, carolTok)
	carol2, _ := listener(t, g, carolTok)
	aliceN, bobN, carol1N, carol2N := updates(alice), updates(bob), updates(carol1), updates(carol2)

	if caps := alice.GetServerCapabilities(); caps.Resources == nil || !caps.Resources.Subscribe {
		t.Errorf("resources.subscribe not advertised: %+v", caps.Resources)
	}

	// Hidden = missing, and nothing reaches the upstream.
	before := len(up.Requests())
	hidden := string(rpcBody(t, g.rawPost(bobTok, bob.GetSessionId(), `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"`+upstreamtest.LiveURI+`"}}`)))
	missing := string(rpcBody(t, g.rawPost(bobTok, bob.GetSessionId(), `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"test://none/counter"}}`)))
	if _, e := resultOf(t, []byte(hidden)); e == nil || strings.ReplaceAll(hidden, upstreamtest.LiveURI, "X") != strings.ReplaceAll(missing, "test://none/counter", "X") {
		t.Errorf("bob's subscribe: %s\nmissing: %s", hidden, missing)
	}
	for _, r := range up.Requests()[before:] {
		if r.Method == "resources/subscribe" {
			t.Errorf("a hidden subscribe reached the upstream: %s", r.Params)
		}
	}

	for _, c := range []*client.Client{alice, carol1, carol2, carol2} { // carol2's second is one subscription
		if err := subscribe(c, upstreamtest.LiveURI); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	// One upstream subscription per principal: carol's two sessions share hers.
	if n := up.Subscribers(upstreamtest.LiveURI); n != 2 {
		t.Errorf("upstream subscribers: %d, want 2", n)
	}

	// Subscribes are decisions: logged with the URI, counted by upstream.
	var sawHidden, sawAllowed bool
	for _, l := range g.decisionLines() {
		if l["action"] == "resources/subscribe" && l["resource"] == upstreamtest.LiveURI && l["server"] == "up" {
			principal, _ := l["principal"].(map[string]any)
			sawHidden = sawHidden || principal["sub"] == "bob" && l["reason_code"] == "not_visible"
			sawAllowed = sawAllowed || principal["sub"] == "alice" && l["result"] == "allow"
		}
	}
	if !sawHidden || !sawAllowed {
		t.Errorf("decision log: bob's hidden subscribe %v, alice's allowed %v:\n%v", sawHidden, sawAllowed, g.decisionLines())
	}
	if m := g.scrape(g.URL + "/metrics"); !strings.Contains(m, `action="resources/subscribe",reason="not_visible",result="deny",tool="up"`) {
		t.Errorf("metrics:\n%s", grepLines(m, "toolgate_policy_decisions_total"))
	}

	up.Update()
	waitFor(t, "the subscribers' updates", func() bool { return aliceN.Load() == 1 && carol1N.Load() == 1 && carol2N.Load() == 1 })
	if res, err := alice.ReadResource(context.Background(), readRequest(upstreamtest.LiveURI)); err != nil || res.Contents[0].(mcp.TextResourceContents).Text != "count 1" {
		t.Errorf("alice reads the live resource: %+v, %v", res, err)
	}

	// The policy hides it from alice: her session is no longer told.
	g.writePolicyFile("data.json", liveData("keep"))
	waitFor(t, "the policy that hides the live resource from alice", func() bool {
		uris, _ := resourceURIs(t, alice)
		return !slices.Contains(uris, upstreamtest.LiveURI)
	})
	up.Update()
	waitFor(t, "carol's second updates", func() bool { return carol1N.Load() == 2 && carol2N.Load() == 2 })

	// Unsubscribed: carol2 is no longer told; carol1 still is, on the same
	// upstream subscription.
	if err := unsubscribe(carol2, upstreamtest.LiveURI); err != nil {
		t.Fatal(err)
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 2 {
		t.Errorf("upstream subscribers after one of carol's unsubscribed: %d, want 2", n)
	}
	up.Update()
	waitFor(t, "carol1's third update", func() bool { return carol1N.Load() == 3 })
	if n := carol2N.Load(); n != 2 {
		t.Errorf("carol2 got %d updates after unsubscribing, want 2", n)
	}
	if n := aliceN.Load(); n != 1 {
		t.Errorf("alice got %d updates, want 1: the later ones were hidden from her", n)
	}
	if n := bobN.Load(); n != 0 {
		t.Errorf("bob got %d updates", n)
	}

	// The end of carol's last subscribed session unsubscribes her upstream.
	if code := g.deleteSession(carolTok, carol1.GetSessionId()); code != 200 {
		t.Fatalf("DELETE: %d", code)
	}
	waitFor(t, "carol's upstream unsubscribe", func() bool { return up.Subscribers(upstreamtest.LiveURI) == 1 })
	if err := unsubscribe(alice, upstreamtest.LiveURI); err != nil {
		t.Fatal(err)
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 0 {
		t.Errorf("upstream subscribers after all unsubscribed: %d", n)
	}
}

// An upstream's prompts/list_changed and resources/list_changed have the
// gate list that upstream again at once (not at the next refresh, 30s
// away), and the client sessions are told.
func TestUpstreamPromptAndResourceListChangedRelistsAtOnce(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) {
		data := strings.Replace(othersData, `"prompt_rules": {`, `"prompt_rules": {"up_added": {}, `, 1)
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	c, _ := listener(t, g, tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g.Config.ResourceURL()}}))
	prompts := notifications(c, mcp.MethodNotificationPromptsListChanged)
	resources := notifications(c, mcp.MethodNotificationResourcesListChanged)
	if got := promptNames(t, c); slices.Contains(got, "up_added") {
		t.Fatalf("before: %v", got)
	}

	up.AddResource("test://doc/added", "added")
	waitFor(t, "the added resource", func() bool {
		uris, _ := resourceURIs(t, c)
		return slices.Contains(uris, "test://doc/added")
	})
	waitFor(t, "resources/list_changed", func() bool { return resources.Load() > 0 })
	if res, err := c.ReadResource(context.Background(), readRequest("test://doc/added")); err != nil || res.Contents[0].(mcp.TextResourceContents).Text != "added" {
		t.Errorf("read the added resource: %+v, %v", res, err)
	}

	if n := prompts.Load(); n != 0 {
		t.Errorf("%d prompts/list_changed for a change of resources", n)
	}

	up.AddPrompt("added")
	waitFor(t, "the added prompt", func() bool { return slices.Contains(promptNames(t, c), "up_added") })
	waitFor(t, "prompts/list_changed", func() bool { return prompts.Load() > 0 })

	// A change of tools tells nothing of prompts and resources: the
	// resource added next is the first news after it, on the same stream.
	p, r := prompts.Load(), resources.Load()
	up.AddTool("extra")
	up.AddResource("test://doc/second", "second")
	waitFor(t, "the second resources/list_changed", func() bool { return resources.Load() > r })
	if n := prompts.Load(); n != p || resources.Load() != r+1 {
		t.Errorf("after a tool and a resource were added: %d more prompts/list_changed, %d more resources/list_changed; want 0 and 1",
			n-p, resources.Load()-r)
	}
}

// An update is decided for the claims of the session's latest token, not
// those it subscribed with: a principal whose new token lacks the
// permission is no longer told.
func TestResourceUpdatesFollowTheSessionsLatestToken(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(liveData("live")), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	aud := []string{g.Config.ResourceURL()}
	dave, _ := listener(t, g, tn.Token(idptest.Claims{Sub: "dave", Audience: aud, Permissions: []string{"live"}}))
	erin, _ := listener(t, g, tn.Token(idptest.Claims{Sub: "erin", Audience: aud, Permissions: []string{"live"}}))
	daveN, erinN := updates(dave), updates(erin)
	for _, c := range []*client.Client{dave, erin} {
		if err := subscribe(c, upstreamtest.LiveURI); err != nil {
			t.Fatal(err)
		}
	}
	up.Update()
	waitFor(t, "both updates", func() bool { return daveN.Load() == 1 && erinN.Load() == 1 })

	// Dave's session goes on with a token without the permission.
	resp := g.rawPost(tn.Token(idptest.Claims{Sub: "dave", Audience: aud}), dave.GetSessionId(), `{"jsonrpc":"2.0","id":9,"method":"ping"}`)
	if _, rpcErr := resultOf(t, rpcBody(t, resp)); rpcErr != nil {
		t.Fatalf("ping: %s", rpcErr)
	}
	up.Update()
	up.Update()
	waitFor(t, "erin's updates", func() bool { return erinN.Load() == 3 })
	if n := daveN.Load(); n != 1 {
		t.Errorf("dave got %d updates, want 1: his token no longer grants the resource", n)
	}
}

// With sessions: shared, every principal's subscription to a URI is one
// upstream subscription on the shared session, ended with the last.
func TestResourceSubscriptionsOnASharedUpstreamSession(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) {
		c.Upstreams[0].Sessions = "shared"
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(liveData("live")), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	aud := []string{g.Config.ResourceURL()}
	alice, _ := listener(t, g, tn.Token(idptest.Claims{Sub: "alice", Audience: aud, Permissions: []string{"live"}}))
	carol, _ := listener(t, g, tn.Token(idptest.Claims{Sub: "carol", Audience: aud, Permissions: []string{"live"}}))
	aliceN, carolN := updates(alice), updates(carol)
	for _, c := range []*client.Client{alice, carol} {
		if err := subscribe(c, upstreamtest.LiveURI); err != nil {
			t.Fatal(err)
		}
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 1 {
		t.Errorf("upstream subscribers: %d, want 1", n)
	}
	up.Update()
	waitFor(t, "both updates", func() bool { return aliceN.Load() == 1 && carolN.Load() == 1 })
	if err := unsubscribe(alice, upstreamtest.LiveURI); err != nil {
		t.Fatal(err)
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 1 {
		t.Errorf("upstream subscribers after alice's unsubscribe: %d, want 1", n)
	}
	up.Update()
	waitFor(t, "carol's second update", func() bool { return carolN.Load() == 2 })
	if n := aliceN.Load(); n != 1 {
		t.Errorf("alice got %d updates after unsubscribing", n)
	}
	if err := unsubscribe(carol, upstreamtest.LiveURI); err != nil {
		t.Fatal(err)
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 0 {
		t.Errorf("upstream subscribers after the last unsubscribe: %d", n)
	}
}

// A resources/subscribe without an MCP session is refused before it
// reaches the upstream: no update could ever be addressed to the client.
func TestResourceSubscribeWithoutASessionIsRefused(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), func(c *config.Config, _ *server.Options) {
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(liveData("live")), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	aliceTok := tn.Token(idptest.Claims{Sub: "alice", Audience: []string{g.Config.ResourceURL()}, Permissions: []string{"live"}})
	before := len(up.Requests())
	body := string(rpcBody(t, g.rawPost(aliceTok, "", `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"`+upstreamtest.LiveURI+`"}}`)))
	if _, e := resultOf(t, []byte(body)); e == nil || !strings.Contains(string(e), "needs an MCP session") {
		t.Errorf("a subscribe without a session: %s", body)
	}
	for _, r := range up.Requests()[before:] {
		if r.Method == "resources/subscribe" {
			t.Errorf("a session-less subscribe reached the upstream: %s", r.Params)
		}
	}
}

// Token-less clients on two addresses have an upstream session each (per
// principal upstream sessions are per address for them): each client's
// update comes once, on its own upstream session, not once for every
// anonymous session upstream; unsubscribing ends its own upstream
// subscription, not another's.
func TestAnonymousResourceUpdatesReachEachClientOnce(t *testing.T) {
	up := upstreamtest.Start(t)
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	g := startGate(t, []*idptest.Tenant{tn}, withOthers(up.URL), withAnonymous(), func(c *config.Config, _ *server.Options) {
		data := strings.Replace(othersData, `"resource_rules": {`, `"resource_rules": {
    "test://live/": {"anonymous": true},`, 1)
		if err := os.WriteFile(filepath.Join(c.Policy.Dir, "data.json"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	anonymous := func(addr string) *client.Client {
		c, _ := listenerWith(t, g, transport.WithHTTPBasicClient(clientFrom(t, addr)))
		return c
	}
	one, two := anonymous("127.0.0.1"), anonymous("127.0.0.2")
	oneN, twoN := updates(one), updates(two)
	for _, c := range []*client.Client{one, two} {
		if err := subscribe(c, upstreamtest.LiveURI); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	if n := up.Subscribers(upstreamtest.LiveURI); n != 2 {
		t.Fatalf("upstream subscribers: %d, want 2 (one upstream session per address)", n)
	}
	up.Update()
	waitFor(t, "both clients' updates", func() bool { return oneN.Load() >= 1 && twoN.Load() >= 1 })
	time.Sleep(300 * time.Millisecond) // room for a second copy to arrive
	if a, b := oneN.Load(), twoN.Load(); a != 1 || b != 1 {
		t.Errorf("updates: %d and %d, want one each", a, b)
	}
	if err := unsubscribe(one, upstreamtest.LiveURI); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first address's upstream unsubscribe", func() bool { return up.Subscribers(upstreamtest.LiveURI) == 1 })
	up.Update()
	waitFor(t, "the second client's update", func() bool { return twoN.Load() == 2 })
	if n := oneN.Load(); n != 1 {
		t.Errorf("the unsubscribed client got %d updates, want 1", n)
	}
}
