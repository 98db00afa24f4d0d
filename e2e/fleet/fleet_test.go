// Package fleet is `make e2e-fleet`: three toolgate processes with one
// configuration behind nginx (round robin, no affinity), their policy from
// one bundle server, Redis their limits.store, all on loopback; then the fleet's
// promises are checked from outside, through the load balancer
// (docs/architecture.md, "A fleet"). It runs only when TOOLGATE_FLEET=1
// (e2e/fleet/run.sh sets it), so that `go test ./...` passes over it.
package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp/idptest"
)

// pollInterval is the bundle's polling interval: a new bundle must be in
// force on every replica within it (plus the time to compile one).
const pollInterval = 2 * time.Second

// fleet is what TestFleet started.
type fleet struct {
	t        *testing.T
	dir      string
	lb       string // the load balancer's base URL: the fleet's public URL
	replicas []*replica
	bundles  *bundleServer
	tenant   *idptest.Tenant
	redis    string // host:port
	redisCmd *exec.Cmd
	redisEnd chan struct{} // closed when redisCmd has exited
}

type replica struct {
	id   string
	url  string // direct, bypassing the load balancer
	cmd  *exec.Cmd
	log  string // its stdout: the decision log
	done chan struct{}
}

func TestFleet(t *testing.T) {
	if os.Getenv("TOOLGATE_FLEET") != "1" {
		t.Skip("make e2e-fleet runs it (TOOLGATE_FLEET=1)")
	}
	f := start(t)
	t.Run("a session is usable on every replica, by its principal only", f.sessionAcrossReplicas)
	t.Run("a DELETE through the balancer ends the session on every replica", f.sessionEnded)
	t.Run("a new bundle reaches every replica within one polling interval", f.bundleRollout)
	t.Run("per-principal quotas are exact across the replicas", f.quotas)
	t.Run("a replica killed under load: no answer to the wrong principal, later calls succeed, quotas stay exact", f.replicaKilled)
	t.Run("Redis stopped: limited calls refused, others run; Redis back: limits resume", f.redisStopped)
}

// start builds toolgate and starts Redis, the bundle server, three
// replicas and nginx; t.Cleanup stops each of them, on failure too.
func start(t *testing.T) *fleet {
	f := &fleet{t: t, dir: t.TempDir(), tenant: idptest.NewTenant(t, idptest.ProviderAuth0)}
	bin := os.Getenv("TOOLGATE_BIN")
	if bin == "" {
		bin = filepath.Join(f.dir, "toolgate")
		run(t, "go", "build", "-o", bin, "github.com/toolgate/toolgate/cmd/toolgate")
	}
	f.startRedis(freePort(t))
	f.bundles = newBundleServer(t)
	f.bundles.serve(opaBuild(t, f.dir, "", "fleet-1"))

	lbPort := freePort(t)
	f.lb = "http://127.0.0.1:" + lbPort
	var upstreams strings.Builder
	for i := range 3 {
		port := freePort(t)
		r := &replica{id: fmt.Sprintf("replica-%d", i+1), url: "http://127.0.0.1:" + port}
		fmt.Fprintf(&upstreams, "    server 127.0.0.1:%s;\n", port)
		// One configuration: only listen differs, as three processes on
		// one host need.
		cfg := filepath.Join(f.dir, r.id+".yaml")
		write(t, cfg, fmt.Sprintf(`listen: 127.0.0.1:%s
public_url: %s
issuers:
  - provider: auth0
    issuer: %s
policy:
  bundle:
    url: %s/bundles/toolgate.tar.gz
    polling_interval: %s
sessions:
  key_env: TOOLGATE_SESSION_KEY
limits:
  store: redis://%s/0
decision_log:
  output: stdout
  flush_interval: 0s
`, port, f.lb, f.tenant.Issuer(), f.bundles.URL, pollInterval, f.redis))
		r.log = filepath.Join(f.dir, r.id+".decisions")
		r.cmd = exec.Command(bin, "serve", "--config", cfg)
		r.cmd.Env = []string{"TOOLGATE_SESSION_KEY=the fleet's session key, thirty-two bytes or more", "TOOLGATE_REPLICA_ID=" + r.id}
		r.done = f.spawn(r.id, r.cmd, r.log)
		f.replicas = append(f.replicas, r)
	}
	for _, r := range f.replicas {
		waitFor(t, r.id+" ready", 30*time.Second, func() bool { return status(r.url+"/readyz") == http.StatusOK })
	}
	f.startNginx(lbPort, upstreams.String())
	waitFor(t, "nginx", 10*time.Second, func() bool { return status(f.lb+"/readyz") == http.StatusOK })
	return f
}

// spawn starts cmd with its stdout in out and its stderr in out.stderr,
// and stops it when the test ends (TERM, then KILL after 10 s). The
// returned channel closes when it has exited.
func (f *fleet) spawn(name string, cmd *exec.Cmd, out string) chan struct{} {
	t := f.t
	stdout, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(out + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The child dies with the test binary, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Logf("%s (pid %d) did not stop on TERM: KILL", name, cmd.Process.Pid)
			_ = cmd.Process.Kill()
			<-done
		}
		stdout.Close()
		stderr.Close()
		if t.Failed() {
			b, _ := os.ReadFile(out + ".stderr")
			t.Logf("%s stderr (last 2 KB):\n%s", name, tail(b, 2048))
		}
	})
	return done
}

// startRedis starts an empty Redis on port (again, after stopRedis).
func (f *fleet) startRedis(port string) {
	f.redisCmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	f.redisEnd = f.spawn("redis", f.redisCmd, filepath.Join(f.dir, "redis-"+time.Now().Format("150405.000")+".log"))
	f.redis = "127.0.0.1:" + port
	waitFor(f.t, "redis", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", f.redis, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line == "+PONG\r\n"
	})
}

// startNginx puts nginx in front of the replicas: round robin, no
// affinity, streamed responses (SSE), the client's Host passed on (the
// replicas check it against public_url).
func (f *fleet) startNginx(port, upstreams string) {
	dir := filepath.Join(f.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	write(f.t, conf, fmt.Sprintf(`daemon off;
worker_processes 1;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream toolgate {
%[2]s  }
  server {
    listen 127.0.0.1:%[3]s;
    location / {
      proxy_pass http://toolgate;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 60s;
    }
  }
}
`, dir, upstreams, port))
	f.spawn("nginx", exec.Command("nginx", "-p", dir, "-c", conf), filepath.Join(dir, "stdout.log"))
}

func (f *fleet) stopRedis() {
	if err := f.redisCmd.Process.Kill(); err != nil {
		f.t.Fatal(err)
	}
	<-f.redisEnd
}

// token is a token of the fleet's issuer for sub, for the fleet.
func (f *fleet) token(sub string) string {
	return f.tenant.Token(idptest.Claims{Sub: sub, Audience: []string{f.lb + "/mcp"}})
}

// sessionAcrossReplicas opens a session through the load balancer and
// uses it until at least two replicas have served it; another principal's
// token on it is refused wherever it lands.
func (f *fleet) sessionAcrossReplicas(t *testing.T) {
	alice, mallory := f.token("auth0|fleet-alice"), f.token("auth0|fleet-mallory")
	resp, _ := post(t, f.lb, alice, "", initialize)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || session == "" {
		t.Fatalf("initialize through nginx: %d, session %q", resp.StatusCode, session)
	}
	for i := range 6 {
		resp, body := post(t, f.lb, alice, session, whoami(i))
		if resp.StatusCode != http.StatusOK || whoamiSub(body) != "auth0|fleet-alice" {
			t.Fatalf("call %d in the session: %d %s", i, resp.StatusCode, body)
		}
	}
	served := f.replicasThatDecided("auth0|fleet-alice")
	if len(served) < 2 {
		t.Errorf("the session's calls were decided by %v; round robin should spread them", served)
	}
	t.Logf("the session was served by %v", served)
	// Round robin: six tries reach every replica twice.
	for i := range 6 {
		if resp, body := post(t, f.lb, mallory, session, whoami(i)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("another principal with the session, try %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if got := f.replicasThatDecided("auth0|fleet-mallory"); len(got) != 0 {
		t.Errorf("another principal's calls in the session were decided by %v", got)
	}
}

// replicasThatDecided reads every replica's decision log for the tool
// calls of sub and counts them by the replica id on their lines.
func (f *fleet) replicasThatDecided(sub string) map[string]int {
	out := map[string]int{}
	for _, r := range f.replicas {
		if n := f.decidedBy(r, sub); n > 0 {
			out[r.id] = n
		}
	}
	return out
}

// decidedBy counts the tool calls of the subjects that begin with sub in
// r's decision log; each line must name r.
func (f *fleet) decidedBy(r *replica, sub string) int { return f.decided(r, sub, "", "") }

// decided counts the calls of tool (any when "") of the subjects that
// begin with sub whose result is result (any when "") in r's decision log;
// each line must name r.
func (f *fleet) decided(r *replica, sub, tool, result string) int {
	b, err := os.ReadFile(r.log)
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	for line := range bytes.Lines(b) {
		var d struct {
			Replica   string `json:"replica"`
			Action    string `json:"action"`
			Tool      string `json:"tool"`
			Result    string `json:"result"`
			Principal struct {
				Sub string `json:"sub"`
			} `json:"principal"`
		}
		if json.Unmarshal(line, &d) == nil && d.Action == "tools/call" && strings.HasPrefix(d.Principal.Sub, sub) &&
			(tool == "" || d.Tool == tool) && (result == "" || d.Result == result) {
			if d.Replica != r.id {
				f.t.Errorf("%s logged a decision as replica %q", r.id, d.Replica)
			}
			n++
		}
	}
	return n
}

// sessionEnded opens a session through the load balancer, uses it on
// every replica, ends it with a DELETE through the balancer, and then asks
// each replica directly: every one answers 404 (MCP basic/transports,
// "Session Management"), those that had adopted it once the end's message
// has reached them.
func (f *fleet) sessionEnded(t *testing.T) {
	alice := f.token("auth0|fleet-ended")
	resp, _ := post(t, f.lb, alice, "", initialize)
	session := resp.Header.Get("Mcp-Session-Id")
	for _, r := range f.replicas {
		if resp, body := post(t, r.url, alice, session, whoami(0)); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s before the DELETE: %d %s", r.id, resp.StatusCode, body)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, f.lb+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE through nginx: %d", resp.StatusCode)
	}
	ended := time.Now()
	for _, r := range f.replicas {
		waitFor(t, r.id+" answers 404 to the ended session", 2*time.Second, func() bool {
			resp, _, err := try(r.url, alice, session, whoami(1))
			return err == nil && resp.StatusCode == http.StatusNotFound
		})
		t.Logf("%s: 404 %s after the DELETE", r.id, time.Since(ended).Round(time.Millisecond))
	}
	for i := range len(f.replicas) {
		if resp, body := post(t, f.lb, alice, session, whoami(i)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("the ended session through nginx, try %d: %d %s", i, resp.StatusCode, body)
		}
	}
}

// replicaKilled runs clients of 8 principals, each in its own session
// through the load balancer, checking that whoami names the client's own
// principal; every fourth call is add, limited to quota a minute per
// principal. One replica is killed (SIGKILL) in the middle. Only calls in
// flight during the kill may fail; every answer names its own principal;
// every call made after the kill is answered; and of each principal's
// calls to add, exactly quota spent the budget: those that ran, and those
// of them that died in flight with the replica.
func (f *fleet) replicaKilled(t *testing.T) {
	const principals, clients, calls = 8, 24, 40
	var killing, killedAt atomic.Int64 // unix nanos: the kill sent, the replica gone
	var wrong, failedInFlight, failedAfter, okAfter atomic.Int32
	var mu sync.Mutex
	addRan, addLimited, addFailed := map[string]int{}, map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	tokens := make([]string, principals)
	for i := range tokens {
		tokens[i] = f.token(fmt.Sprintf("auth0|fleet-load-%d", i))
	}
	progress := make(chan struct{}, clients*calls)
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			p := c % principals
			sub, tok := fmt.Sprintf("auth0|fleet-load-%d", p), tokens[p]
			session := ""
			for i := range calls {
				startedAt := time.Now().UnixNano()
				if session == "" {
					if resp, _, err := try(f.lb, tok, "", initialize); err == nil && resp.StatusCode == http.StatusOK {
						session = resp.Header.Get("Mcp-Session-Id")
					}
				}
				limitedCall := i%4 == 0
				call := whoami(i)
				if limitedCall {
					call = add(i)
				}
				resp, body, err := try(f.lb, tok, session, call)
				after := killedAt.Load() != 0 && startedAt > killedAt.Load()
				kind := callKind(body)
				switch {
				case err != nil || resp.StatusCode != http.StatusOK || session == "":
					switch {
					case after:
						failedAfter.Add(1)
						t.Errorf("client %d call %d after the kill: %v %v %s", c, i, err, code(resp), body)
					case killing.Load() == 0 || time.Now().UnixNano() < killing.Load():
						t.Errorf("client %d call %d before the kill: %v %v %s", c, i, err, code(resp), body)
					default:
						failedInFlight.Add(1)
						if limitedCall {
							mu.Lock()
							addFailed[sub]++
							mu.Unlock()
						}
					}
				case limitedCall && (kind == callRan || kind == callLimited):
					mu.Lock()
					if kind == callRan {
						addRan[sub]++
					} else {
						addLimited[sub]++
					}
					mu.Unlock()
					if after {
						okAfter.Add(1)
					}
				case limitedCall:
					t.Errorf("client %d call %d to add: %s", c, i, body)
				case whoamiSub(body) != sub:
					wrong.Add(1)
					t.Errorf("client of %s got another principal's answer: %s", sub, body)
				case after:
					okAfter.Add(1)
				}
				progress <- struct{}{}
			}
		})
	}
	// Kill a replica once a third of the calls are answered.
	for range clients * calls / 3 {
		<-progress
	}
	victim := f.replicas[1]
	killing.Store(time.Now().UnixNano())
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	killedAt.Store(time.Now().UnixNano())
	go func() {
		for range progress {
		}
	}()
	wg.Wait()
	close(progress)
	t.Logf("%d calls: %d in flight during the kill failed, %d failed after it, %d succeeded after it, %d answers for another principal",
		clients*calls, failedInFlight.Load(), failedAfter.Load(), okAfter.Load(), wrong.Load())
	if okAfter.Load() == 0 {
		t.Error("no call was made after the kill: the load ended too soon")
	}
	if took := time.Since(start); took >= quotaRefill {
		t.Fatalf("the load took %s, longer than the budget takes to refill by one (%s): the count cannot be exact", took, quotaRefill)
	}
	const adds = clients / principals * calls / 4
	for p := range principals {
		sub := fmt.Sprintf("auth0|fleet-load-%d", p)
		ran, limited, failed := addRan[sub], addLimited[sub], addFailed[sub]
		if ran > quota || ran+failed < quota || ran+limited+failed != adds {
			t.Errorf("%s's %d calls to add: %d ran, %d were limited, %d failed in flight; want %d spent", sub, adds, ran, limited, failed, quota)
		}
	}
	t.Logf("calls to add per principal: ran %v, failed in flight %v", addRan, addFailed)
	if n := f.decidedBy(victim, "auth0|fleet-load-"); n == 0 {
		t.Error("the killed replica had decided none of the load's calls: the kill tested nothing")
	}
	f.replicas = append(f.replicas[:1], f.replicas[2:]...)
}

// bundleRollout serves a new bundle and measures when each replica has it
// in force: its /readyz names another revision, the same on every replica.
func (f *fleet) bundleRollout(t *testing.T) {
	before := map[string]string{}
	for _, r := range f.replicas {
		before[r.id] = revision(r.url)
	}
	f.bundles.serve(opaBuild(t, f.dir, limitedPolicy, "fleet-2"))
	served := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	after := map[string]bool{}
	for _, r := range f.replicas {
		wg.Go(func() {
			deadline := served.Add(pollInterval + time.Second) // a poll, then the download and compilation
			for time.Now().Before(deadline) {
				if rev := revision(r.url); rev != before[r.id] && rev != "" {
					t.Logf("%s: the new bundle in force after %s", r.id, time.Since(served).Round(10*time.Millisecond))
					mu.Lock()
					after[rev] = true
					mu.Unlock()
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Errorf("%s: still revision %q %s after the new bundle was served", r.id, before[r.id], time.Since(served).Round(10*time.Millisecond))
		})
	}
	wg.Wait()
	if len(after) > 1 {
		t.Errorf("the replicas disagree on the new revision: %v", after)
	}
}

// limitedPolicy is the default policy's data with add limited to
// quota calls a minute per principal (docs/policy-contract.md, "limits").
var limitedPolicy = fmt.Sprintf(`{"tool_rules": {"whoami": {},
  "add": {"limits": [{"each": "principal", "rate": %d, "per": "1m"}]}}}`, quota)

// quota is add's limit per principal and minute; its budget refills by
// one every quotaRefill.
const (
	quota       = 10
	quotaRefill = time.Minute / quota
)

// quotas runs 64 concurrent clients of 8 principals through the load
// balancer, each in its own session, each calling add 3 times: of the 24
// calls of a principal, spread over the replicas, exactly quota run and
// the others get the rate-limit result.
func (f *fleet) quotas(t *testing.T) {
	const principals, clients, calls = 8, 64, 3
	var mu sync.Mutex
	ran, limited := map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			sub := fmt.Sprintf("auth0|fleet-quota-%d", c%principals)
			tok := f.token(sub)
			resp, _, err := try(f.lb, tok, "", initialize)
			if err != nil {
				t.Errorf("client %d: initialize: %v", c, err)
				return
			}
			session := resp.Header.Get("Mcp-Session-Id")
			for i := range calls {
				resp, body, err := try(f.lb, tok, session, add(i))
				kind := callKind(body)
				mu.Lock()
				switch {
				case err == nil && resp.StatusCode == http.StatusOK && kind == callRan:
					ran[sub]++
				case err == nil && resp.StatusCode == http.StatusOK && kind == callLimited:
					limited[sub]++
				default:
					t.Errorf("client %d call %d: %v %d %s", c, i, err, code(resp), body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took >= quotaRefill {
		t.Fatalf("the load took %s, longer than the budget takes to refill by one (%s): the count cannot be exact", took, quotaRefill)
	}
	for p := range principals {
		sub := fmt.Sprintf("auth0|fleet-quota-%d", p)
		if ran[sub] != quota || limited[sub] != clients/principals*calls-quota {
			t.Errorf("%s: %d calls ran and %d were limited, want %d and %d", sub, ran[sub], limited[sub], quota, clients/principals*calls-quota)
		}
	}
	allowedOn := map[string]int{}
	for _, r := range f.replicas {
		if n := f.decided(r, "auth0|fleet-quota-", "add", "allow"); n > 0 {
			allowedOn[r.id] = n
		}
	}
	t.Logf("%d clients of %d principals, %d calls each in %s: the calls that ran were allowed by %v",
		clients, principals, calls, time.Since(start).Round(time.Millisecond), allowedOn)
	if len(allowedOn) < 2 {
		t.Errorf("the calls that ran were allowed by %v: the quota was not shared across replicas", allowedOn)
	}
}

// redisStopped stops Redis: a limited call is refused with the clear
// error and the others run; then starts it again, empty: the limit counts
// again from a full budget.
func (f *fleet) redisStopped(t *testing.T) {
	tok := f.token("auth0|fleet-redis")
	resp, _ := post(t, f.lb, tok, "", initialize)
	session := resp.Header.Get("Mcp-Session-Id")
	port := strings.TrimPrefix(f.redis, "127.0.0.1:")
	f.stopRedis()
	for i := range 2 * len(f.replicas) { // round robin: every replica, twice
		if resp, body := post(t, f.lb, tok, session, add(i)); resp.StatusCode != http.StatusOK || callKind(body) != callUnavailable {
			t.Errorf("a limited call with Redis stopped, try %d: %d %s", i, resp.StatusCode, body)
		}
		if resp, body := post(t, f.lb, tok, session, whoami(i)); resp.StatusCode != http.StatusOK || whoamiSub(body) != "auth0|fleet-redis" {
			t.Errorf("a call without limits with Redis stopped, try %d: %d %s", i, resp.StatusCode, body)
		}
	}
	f.startRedis(port)
	ran := 0
	for i := range quota + 2 {
		resp, body := post(t, f.lb, tok, session, add(i))
		switch kind := callKind(body); {
		case resp.StatusCode == http.StatusOK && kind == callRan:
			ran++
		case resp.StatusCode != http.StatusOK || kind != callLimited:
			t.Errorf("a limited call with Redis back, try %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if ran != quota {
		t.Errorf("with Redis back, %d of %d calls ran, want %d", ran, quota+2, quota)
	}
}

func revision(base string) string {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var body struct {
		Revision string `json:"policy_revision"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.Revision
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fleet","version":"1"}}}`

func whoami(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`, id+2)
}

func add(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"add","arguments":{"a":%d,"b":1}}}`, id+2, id)
}

// What became of a tool call.
const (
	callRan         = "ran"
	callLimited     = "limited"     // the rate-limit result (docs/http.md)
	callUnavailable = "unavailable" // the limit store could not be reached
)

// callKind says what became of the tool call answered by body: "" when it
// is none of the kinds above.
func callKind(body string) string {
	var rpc struct {
		Result struct {
			IsError bool `json:"isError"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			Meta struct {
				RetryAfter int `json:"retry_after_seconds"`
			} `json:"_meta"`
		} `json:"result"`
	}
	if json.Unmarshal([]byte(sseData(body)), &rpc) != nil || len(rpc.Result.Content) != 1 {
		return ""
	}
	text := rpc.Result.Content[0].Text
	switch {
	case !rpc.Result.IsError:
		return callRan
	case strings.HasPrefix(text, "Rate limit exceeded: ") && rpc.Result.Meta.RetryAfter > 0:
		return callLimited
	case strings.HasPrefix(text, "Rate limits cannot be checked: the limit store is unreachable"):
		return callUnavailable
	}
	return ""
}

// sseData is the data line of an SSE answer, or body itself.
func sseData(body string) string {
	for line := range strings.Lines(body) {
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			return data
		}
	}
	return body
}

// whoamiSub is the subject in whoami's answer, "" when the body is not
// one.
func whoamiSub(body string) string {
	var rpc struct {
		Result struct {
			IsError bool `json:"isError"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
	}
	if json.Unmarshal([]byte(sseData(body)), &rpc) != nil || rpc.Result.IsError || len(rpc.Result.Content) != 1 {
		return ""
	}
	var p struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal([]byte(rpc.Result.Content[0].Text), &p)
	return p.Sub
}

// post sends one JSON-RPC message of the 2025-06-18 revision.
func post(t *testing.T, base, token, session, body string) (*http.Response, string) {
	t.Helper()
	resp, b, err := try(base, token, session, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var client = &http.Client{Timeout: 20 * time.Second}

func try(base, token, session, body string) (*http.Response, string, error) {
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	req.Header.Set("Authorization", "Bearer "+token)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func code(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// bundleServer serves one bundle at a time, with an ETag.
type bundleServer struct {
	*httptest.Server
	mu         sync.Mutex
	body       []byte
	etag       string
	downloaded atomic.Int32
}

func newBundleServer(t *testing.T) *bundleServer {
	bs := &bundleServer{}
	bs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bs.mu.Lock()
		body, etag := bs.body, bs.etag
		bs.mu.Unlock()
		w.Header().Set("ETag", etag)
		if strings.Contains(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified) // RFC 9110 §15.4.5
			return
		}
		bs.downloaded.Add(1)
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(body)
	}))
	t.Cleanup(bs.Close)
	return bs
}

func (bs *bundleServer) serve(body []byte) {
	sum := sha256.Sum256(body)
	bs.mu.Lock()
	bs.body, bs.etag = body, `"`+hex.EncodeToString(sum[:8])+`"`
	bs.mu.Unlock()
}

// opaBuild makes a bundle of toolgate's default policy (rego/) with data
// replaced when data is not empty, with the OPA command line at the
// library's version (go.mod's tool line).
func opaBuild(t *testing.T, tmp, data, rev string) []byte {
	t.Helper()
	src := filepath.Join(tmp, "policy-"+rev)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("../../rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("../../rego", name))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(src, name), string(b))
	}
	if data != "" {
		write(t, filepath.Join(src, "data.json"), data)
	}
	out := filepath.Join(tmp, rev+".tar.gz")
	run(t, "go", "tool", "opa", "build", "-b", src, "-o", out, "--revision", rev)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func status(url string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
