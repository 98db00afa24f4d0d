// Command smoke is the check of `make static` (docs/deployment.md): the
// binary is statically linked and built as the Dockerfile builds it, and it
// serves the development default when started as a container starts it: as
// a user who is not root, with an empty environment, outside the repository
// (so the policy compiled into the binary serves).
//
//	go run ./deploy/smoke -version v1.2.3 bin/toolgate-static
package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// nobody is who the binary runs as when the check runs as root (CI does);
// the image's own user is distroless's nonroot (65532), another unprivileged
// id: what matters is that it is not root and owns nothing.
const nobody = 65534

func main() {
	version := flag.String("version", "", "the server.Version the binary was built with")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: smoke -version V BINARY")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *version); err != nil {
		fmt.Fprintln(os.Stderr, "smoke:", err)
		os.Exit(1)
	}
	fmt.Println("smoke: ok")
}

func run(bin, version string) error {
	if err := checkStatic(bin); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "toolgate-smoke-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	exe := filepath.Join(dir, "toolgate")
	if err := copyFile(bin, exe); err != nil {
		return err
	}
	// Another user must reach the binary; the directory is the process's
	// working directory, where no rego/ exists.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}

	var logs bytes.Buffer
	srv := command(exe, dir, "serve", "--listen", "127.0.0.1:0")
	stderr, err := srv.StderrPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(io.TeeReader(stderr, &logs))
		for sc.Scan() {
			var line struct{ Msg, Address string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "toolgate listening" {
				addr <- line.Address
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	err = check(exe, dir, addr, done, version)
	srv.Process.Signal(syscall.SIGTERM)
	werr := make(chan error, 1)
	go func() { <-done; werr <- srv.Wait() }()
	select {
	case e := <-werr:
		if err == nil && e != nil {
			err = fmt.Errorf("toolgate stopped with %v", e)
		}
	case <-time.After(15 * time.Second):
		srv.Process.Kill()
		err = errors.Join(err, errors.New("toolgate did not stop within 15s of SIGTERM"))
	}
	if err != nil {
		return fmt.Errorf("%w\ntoolgate's log:\n%s", err, logs.String())
	}
	return nil
}

// checkStatic: no program interpreter and no shared library (what `ldd`
// calls "not a dynamic executable"), built without cgo and with -trimpath.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it has a program interpreter)", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v (%v)", bin, libs, err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return err
	}
	want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"}
	for _, s := range info.Settings {
		if v, ok := want[s.Key]; ok && v == s.Value {
			delete(want, s.Key)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("%s was not built with %v", bin, want)
	}
	return nil
}

// command runs the binary as a container would: not as root, with no
// environment at all, in dir.
func command(exe, dir string, args ...string) *exec.Cmd {
	c := exec.Command(exe, args...)
	c.Env = []string{} // not nil: nil would inherit this process's environment
	c.Dir = dir
	if os.Getuid() == 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	}
	return c
}

// check waits for /healthz and /readyz, then lists the tools of a
// development token whose holder has no permissions: the default policy shows
// add and whoami, and hides image_generation.
func check(exe, dir string, addr <-chan string, exited <-chan struct{}, version string) error {
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-exited:
		return errors.New("toolgate exited before it listened")
	case <-time.After(30 * time.Second):
		return errors.New("toolgate did not log `toolgate listening` within 30s")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if err := waitOK(base + path); err != nil {
			return err
		}
	}
	var out bytes.Buffer
	tok := command(exe, dir, "token", "--url", base, "--sub", "smoke")
	tok.Stdout, tok.Stderr = &out, &out
	if err := tok.Run(); err != nil {
		return fmt.Errorf("toolgate token: %v: %s", err, out.String())
	}
	token := strings.TrimSpace(out.String())

	var initResult struct {
		ServerInfo struct{ Version string } `json:"serverInfo"`
	}
	session, err := rpc(base, token, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"1"}}}`, &initResult)
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if initResult.ServerInfo.Version != version {
		return fmt.Errorf("serverInfo.version is %q, want %q (the -ldflags -X of the build)", initResult.ServerInfo.Version, version)
	}
	var list struct{ Tools []struct{ Name string } }
	if _, err := rpc(base, token, session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, &list); err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	var names []string
	for _, t := range list.Tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"add", "whoami"}) {
		return fmt.Errorf("tools/list for a user without permissions = %v, want [add whoami]", names)
	}
	return nil
}

func waitOK(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rpc posts one JSON-RPC request to /mcp and decodes its result, from a
// JSON body or the first event of an SSE stream; it returns the session id
// the answer carries.
func rpc(base, token, session, body string, result any) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		for _, line := range strings.Split(string(b), "\n") {
			if data, ok := strings.CutPrefix(line, "data:"); ok {
				b = []byte(data)
				break
			}
		}
	}
	var msg struct {
		Result json.RawMessage
		Error  *struct{ Message string }
	}
	if err := json.Unmarshal(b, &msg); err != nil {
		return "", fmt.Errorf("%v: %s", err, b)
	}
	if msg.Error != nil {
		return "", fmt.Errorf("JSON-RPC error: %s", msg.Error.Message)
	}
	return resp.Header.Get("Mcp-Session-Id"), json.Unmarshal(msg.Result, result)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
