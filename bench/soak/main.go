// Command soak runs toolgate as its own process on loopback under steady
// mixed load for a while (principals with different rights; sessions
// opening and closing; lists, allowed calls, step-ups, denials and hidden
// tools), and prints the server's resident memory and goroutines at the
// start and the end, read from its own /metrics. They must be flat.
//
//	go run ./bench/soak [-duration 2m] [-clients 16]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toolgate/toolgate/bench/internal/mcpclient"
)

func main() {
	duration := flag.Duration("duration", 2*time.Minute, "how long the load runs")
	clients := flag.Int("clients", 16, "concurrent clients")
	flag.Parse()
	if err := run(*duration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, clients int) error {
	tmp, err := os.MkdirTemp("", "toolgate-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "toolgate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/toolgate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	env := append(os.Environ(), "TOOLGATE_DEV_KEY="+filepath.Join(tmp, "dev.pem"))
	srv := exec.Command(bin, "serve", "--listen", addr)
	srv.Env = env
	srv.Stderr, _ = os.Create(filepath.Join(tmp, "toolgate.log"))
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	base := "http://" + addr
	if err := waitReady(base); err != nil {
		return err
	}

	token := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"token", "--url", base}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	var tokens []string
	for i, rights := range [][]string{{}, {"--permissions", "image_generation"}, {"--permissions", "image_generation", "--scope", "images:write"}, {"--roles", "admin", "--scope", "images:write"}} {
		for j := range 4 {
			t, err := token(append([]string{"--sub", fmt.Sprintf("soak-%d-%d", i, j)}, rights...)...)
			if err != nil {
				return err
			}
			tokens = append(tokens, t)
		}
	}

	bodies := []string{
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":%d,"b":2}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"image_generation","arguments":{"prompt":"soak %d"}}}`,
		`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}`,
	}
	var requests, failures atomic.Int64
	load := func(ctx context.Context, d time.Duration) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				defer hc.CloseIdleConnections()
				for ctx.Err() == nil {
					c := &mcpclient.Client{HTTP: hc, URL: base + "/mcp", Token: tokens[rng.IntN(len(tokens))]}
					if err := c.Initialize(); err != nil {
						failures.Add(1)
						continue
					}
					for range 1 + rng.IntN(20) { // a session lives for a few requests
						body := bodies[rng.IntN(len(bodies))]
						if strings.Contains(body, "%d") {
							body = fmt.Sprintf(body, rng.IntN(50)) // some repeats, some new
						}
						if _, status, err := c.Post(body); err != nil || (status != 200 && status != 403) {
							failures.Add(1)
						}
						requests.Add(1)
					}
					c.Close()
				}
			}()
		}
		wg.Wait()
	}

	ctx := context.Background()
	fmt.Printf("soak: toolgate (pid %d) on %s, %d clients, %s of mixed load\n", srv.Process.Pid, addr, clients, duration)
	load(ctx, min(duration/6, 20*time.Second)) // warm up: caches, pools, the heap's working size
	time.Sleep(2 * time.Second)
	start, err := sample(base)
	if err != nil {
		return err
	}
	fmt.Printf("%-8s %12s %12s %10s %10s\n", "at", "rss MiB", "heap MiB", "goroutines", "sessions")
	start.print("start")
	requests.Store(0)
	begun := time.Now()
	step := duration / 4
	for i := 1; i <= 4; i++ {
		load(ctx, step)
		s, err := sample(base)
		if err != nil {
			return err
		}
		s.print(time.Since(begun).Round(time.Second).String())
	}
	time.Sleep(2 * time.Second) // in-flight work settles
	end, err := sample(base)
	if err != nil {
		return err
	}
	end.print("end")
	fmt.Printf("%d requests (%.0f/s), %d unexpected answers\n", requests.Load(), float64(requests.Load())/time.Since(begun).Seconds(), failures.Load())
	var problems []string
	if end.goroutines > start.goroutines+5 {
		problems = append(problems, fmt.Sprintf("goroutines grew from %.0f to %.0f", start.goroutines, end.goroutines))
	}
	if end.rss > start.rss*1.25+8<<20 {
		problems = append(problems, fmt.Sprintf("resident memory grew from %.1f to %.1f MiB", start.rss/(1<<20), end.rss/(1<<20)))
	}
	if failures.Load() > 0 {
		problems = append(problems, fmt.Sprintf("%d unexpected answers", failures.Load()))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Println("flat: no growth in memory or goroutines")
	return nil
}

type snapshot struct{ rss, heap, goroutines, sessions float64 }

func (s snapshot) print(at string) {
	fmt.Printf("%-8s %12.1f %12.1f %10.0f %10.0f\n", at, s.rss/(1<<20), s.heap/(1<<20), s.goroutines, s.sessions)
}

// sample reads the server's own gauges from /metrics.
func sample(base string) (snapshot, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return snapshot{}, err
	}
	defer resp.Body.Close()
	var s snapshot
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "process_resident_memory_bytes":
			s.rss = v
		case "go_memstats_heap_inuse_bytes":
			s.heap = v
		case "go_goroutines":
			s.goroutines = v
		case "toolgate_sessions_active":
			s.sessions = v
		}
	}
	return s, sc.Err()
}

func waitReady(base string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("toolgate did not become ready")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
