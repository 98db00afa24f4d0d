// Command load measures what the gate costs: in one run on loopback it
// starts a bare mcp-go Streamable HTTP server and toolgate with its default
// policy, drives both with the same keep-alive load, alternating A B A B, and
// prints throughput, p50 and p99 for each and the ratio toolgate/bare.
//
// The gateway run puts toolgate in front of a bare mcp-go upstream and
// compares it with the same upstream reached directly.
//
//	go run ./bench/load [-clients 16] [-round 2s] [-rounds 10] [-tools 1000] [-distinct=false] [-gateway=false]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/bench/internal/mcpclient"
	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/internal/wire"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/tools"
)

func main() {
	clients := flag.Int("clients", 16, "concurrent keep-alive clients")
	round := flag.Duration("round", 2*time.Second, "length of one measured round")
	rounds := flag.Int("rounds", 10, "rounds per server (alternating A B A B)")
	listTools := flag.Int("tools", 1000, "catalog size of the tools/list run (0 skips it)")
	distinct := flag.Bool("distinct", true, "also run calls whose arguments differ every time (decision cache misses)")
	gateway := flag.Bool("gateway", true, "also run toolgate in front of a bare upstream against the upstream reached directly")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*clients, *round, *rounds, *listTools, *distinct, *gateway); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type target struct {
	name, url, token string
	// tool is the name under which this target serves the tool the load
	// calls ("add"; behind the gateway, the upstream's prefixed name).
	tool string
	stop func()
}

func run(clients int, round time.Duration, rounds, listTools int, distinct, gateway bool) error {
	tmp, err := os.MkdirTemp("", "toolgate-load")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	builtin := tools.Builtin() // the same catalog on both servers; the load calls add
	fmt.Printf("tools/call add: %d clients, %d rounds of %s per server, alternating\n", clients, rounds, round)
	bare, err := startBare(builtin)
	if err != nil {
		return err
	}
	gate, err := startGate(tmp, builtin, nil, nil)
	if err != nil {
		return err
	}
	call := func(tool string, _ int) string {
		return `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"a":2,"b":3}}}`
	}
	fresh := func(tool string, n int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"%s","arguments":{"a":%d,"b":%d}}}`, tool, rand.Int64(), n)
	}
	if err := compare(bare, gate, call, clients, round, rounds); err != nil {
		return err
	}
	if distinct {
		// Arguments never seen before (a prompt, a query): the default
		// policy's rule for add has no argument limits, so partial
		// evaluation finds its decision free of the arguments and one
		// decision per principal serves every call; a tool with argument
		// limits would evaluate the policy on every call.
		fmt.Printf("\ntools/call add, arguments differing on every call: %d clients, %d rounds of %s\n", clients, rounds, round)
		if err := compare(bare, gate, fresh, clients, round, rounds); err != nil {
			return err
		}
	}
	gate.stop()

	if gateway {
		// The gateway: toolgate in front of the bare server (its only
		// upstream, no built-in tools), against the bare server reached
		// directly; both processes share this machine's CPU. Every call
		// is forwarded on toolgate's pooled session of the principal.
		fmt.Printf("\ngateway: tools/call add through toolgate to a bare upstream against the upstream directly, arguments differing on every call: %d clients, %d rounds of %s\n", clients, rounds, round)
		up := []config.Upstream{{Name: "up", URL: bare.url}}
		gw, err := startGate(tmp, nil, map[string]any{"server_rules": map[string]any{"up": map[string]any{}}}, up)
		if err != nil {
			return err
		}
		gw.name, gw.tool = "gateway", "up_add"
		bare.name = "direct"
		if err := compare(bare, gw, fresh, clients, round, rounds); err != nil {
			return err
		}
		gw.stop()
		// For scale: the least any HTTP hop in front of the upstream
		// costs, a reverse proxy that reads nothing of the messages.
		fmt.Printf("\nfor scale: net/http/httputil's reverse proxy in front of the same upstream, the same load\n")
		proxy, err := startProxy(bare)
		if err != nil {
			return err
		}
		if err := compare(bare, proxy, fresh, clients, round, rounds); err != nil {
			return err
		}
		proxy.stop()
	}
	bare.stop()

	if listTools > 0 {
		catalog := syntheticTools(listTools)
		fmt.Printf("\ntools/list, %d-tool catalog (all granted): %d clients, %d rounds of %s\n", listTools, clients, rounds, round)
		bare, err := startBare(catalog)
		if err != nil {
			return err
		}
		gate, err := startGate(tmp, catalog, grantAll(catalog), nil)
		if err != nil {
			return err
		}
		list := func(string, int) string { return `{"jsonrpc":"2.0","id":2,"method":"tools/list"}` }
		if err := compare(bare, gate, list, clients, round, rounds); err != nil {
			return err
		}
		bare.stop()
		gate.stop()
	}
	return nil
}

// compare drives a and b with the same load, alternating; body gives the
// n-th message of a client, calling the target's tool.
func compare(a, b *target, body func(tool string, n int) string, clients int, round time.Duration, rounds int) error {
	results := map[string]*stats{a.name: {}, b.name: {}}
	// Warm both up first (connections, caches, JIT of the kernel's paths).
	for _, t := range []*target{a, b} {
		if _, err := drive(t, body, clients, max(round/5, time.Second)); err != nil {
			return err
		}
	}
	// Each round of b is paired with the round of a just before it: the two
	// share the machine's state of that moment, which on a shared host
	// swings more from round to round than the servers differ.
	paired := make([]float64, 0, rounds)
	for i := 0; i < rounds; i++ {
		var rate [2]float64
		for j, t := range []*target{a, b} {
			s, err := drive(t, body, clients, round)
			if err != nil {
				return err
			}
			results[t.name].add(s)
			rate[j] = s.rate()
		}
		paired = append(paired, rate[1]/rate[0])
	}
	ra, rb := results[a.name], results[b.name]
	fmt.Printf("%-9s %10s %10s %10s %12s\n", "server", "req/s", "p50", "p99", "CPU/req")
	for _, t := range []*target{a, b} {
		r := results[t.name]
		fmt.Printf("%-9s %10.0f %10s %10s %12s\n", t.name, r.rate(), r.quantile(0.50), r.quantile(0.99), r.cpuPerRequest())
	}
	fmt.Printf("ratio %s/%s throughput: %.2f   p99 difference: %s   CPU/req ratio %s/%s: %.2f\n", b.name, a.name, rb.rate()/ra.rate(), rb.quantile(0.99)-ra.quantile(0.99),
		a.name, b.name, float64(ra.cpuPerRequest())/float64(rb.cpuPerRequest()))
	slices.Sort(paired)
	fmt.Printf("throughput ratio of the %d paired rounds: median %.2f, quartiles %.2f to %.2f\n", len(paired),
		quantile(paired, 0.5), quantile(paired, 0.25), quantile(paired, 0.75))
	return nil
}

// quantile is the q-quantile of sorted values, interpolated between the
// two nearest.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

type stats struct {
	n         int
	elapsed   time.Duration
	cpu       time.Duration // CPU time of the whole process: load and server
	latencies []time.Duration
}

func (s *stats) add(o *stats) {
	s.n += o.n
	s.elapsed += o.elapsed
	s.cpu += o.cpu
	s.latencies = append(s.latencies, o.latencies...)
}

func (s *stats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

// cpuPerRequest is less disturbed than the rate by other tenants of the
// machine taking CPU away: it counts only what this process spent.
func (s *stats) cpuPerRequest() time.Duration {
	return (s.cpu / time.Duration(s.n)).Round(100 * time.Nanosecond)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (s *stats) quantile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	slices.Sort(s.latencies)
	return s.latencies[int(q*float64(len(s.latencies)-1))].Round(time.Microsecond)
}

// drive runs clients keep-alive loops posting body(t.tool, 0), body(t.tool,
// 1), … for d, each on its own MCP session.
func drive(t *target, body func(tool string, n int) string, clients int, d time.Duration) (*stats, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	out := make([]*stats, clients)
	errs := make(chan error, clients)
	start, cpu := time.Now(), cpuTime()
	deadline := start.Add(d)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels("client", t.name), func(context.Context) {
			defer wg.Done()
			s := &stats{latencies: make([]time.Duration, 0, 1<<14)}
			out[i] = s
			c := &mcpclient.Client{HTTP: hc, URL: t.url, Token: t.token}
			if err := c.Initialize(); err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				b, status, err := c.Post(body(t.tool, s.n))
				if err == nil && (status != http.StatusOK || bytes.Contains(b, []byte(`"isError":true`)) || bytes.Contains(b, []byte(`"error":`))) {
					err = fmt.Errorf("status %d: %.200s", status, b)
				}
				if err != nil {
					errs <- err
					return
				}
				s.latencies = append(s.latencies, time.Since(t0))
				s.n++
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	total := &stats{}
	for _, s := range out {
		total.n += s.n
		total.latencies = append(total.latencies, s.latencies...)
	}
	total.elapsed, total.cpu = time.Since(start), cpuTime()-cpu
	return total, nil
}

func startBare(ts []mcpserver.ServerTool) (*target, error) {
	s := mcpserver.NewMCPServer("bare", "1", mcpserver.WithToolCapabilities(true))
	s.AddTools(ts...)
	h := mcpserver.NewStreamableHTTPServer(s, mcpserver.WithStreamableHTTPLogger(slog.New(slog.DiscardHandler)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: h}
	go pprof.Do(context.Background(), pprof.Labels("server", "bare"), func(context.Context) { hs.Serve(ln) })
	return &target{name: "bare", url: "http://" + ln.Addr().String() + "/mcp", tool: "add", stop: func() { hs.Close() }}, nil
}

// startProxy is a reverse proxy to t: one more HTTP hop and nothing else.
func startProxy(t *target) (*target, error) {
	u, err := url.Parse(t.url)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: rp}
	go pprof.Do(context.Background(), pprof.Labels("server", "proxy"), func(context.Context) { hs.Serve(ln) })
	return &target{name: "proxy", url: "http://" + ln.Addr().String() + "/mcp", tool: t.tool, stop: func() { hs.Close() }}, nil
}

// startGate runs toolgate as `toolgate serve` would, with a development
// issuer, the given tools (none: builtin_tools false) and upstreams, the
// default policy (or policy data replacing its data.json), and the decision
// log written to a file.
func startGate(tmp string, ts []mcpserver.ServerTool, data map[string]any, ups []config.Upstream) (*target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Anonymous = true
	cfg.BuiltinTools = len(ts) > 0
	cfg.Upstreams = ups
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Anonymous = false
	cfg.DecisionLog.Output = filepath.Join(tmp, fmt.Sprintf("decisions-%d.log", time.Now().UnixNano()))
	dev, err := idp.LoadDevIssuer(filepath.Join(tmp, "dev.pem"), cfg.PublicURL+"/dev", cfg.ResourceURL())
	if err != nil {
		return nil, err
	}
	is, err := dev.Issuer()
	if err != nil {
		return nil, err
	}
	opts := server.Options{Config: cfg, Tools: ts, Logger: slog.New(slog.DiscardHandler)}
	src := wire.Sources{Issuers: []idp.Issuer{is}}
	if data != nil {
		dir, err := os.MkdirTemp(tmp, "policy")
		if err != nil {
			return nil, err
		}
		policyText, err := os.ReadFile("rego/policy.rego")
		if err != nil {
			return nil, fmt.Errorf("run from the repository root: %w", err)
		}
		b, _ := json.Marshal(data)
		os.WriteFile(filepath.Join(dir, "policy.rego"), policyText, 0o644)
		os.WriteFile(filepath.Join(dir, "data.json"), b, 0o644)
		src.Policy = &policy.Source{Dir: dir}
	}
	srv, err := wire.Server(context.Background(), opts, src)
	if err != nil {
		return nil, err
	}
	tok, err := dev.Mint(idp.DevClaims{Sub: "load", TTL: time.Hour})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go pprof.Do(ctx, pprof.Labels("server", "toolgate"), func(ctx context.Context) { srv.Serve(ctx, ln, 5*time.Second); close(done) })
	return &target{name: "toolgate", url: "http://" + ln.Addr().String() + "/mcp", token: tok, tool: "add", stop: func() { cancel(); <-done }}, nil
}

func syntheticTools(n int) []mcpserver.ServerTool {
	out := make([]mcpserver.ServerTool, n)
	for i := range out {
		name := fmt.Sprintf("tool_%04d", i)
		out[i] = mcpserver.ServerTool{
			Tool: mcp.NewTool(name, mcp.WithDescription("synthetic tool "+name), mcp.WithString("q")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("ok"), nil
			},
		}
	}
	return out
}

func grantAll(ts []mcpserver.ServerTool) map[string]any {
	rules := map[string]any{}
	for _, t := range ts {
		rules[t.Tool.Name] = map[string]any{}
	}
	return map[string]any{"tool_rules": rules, "role_permissions": map[string]any{}}
}
