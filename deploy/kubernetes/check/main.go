// Command check is `make k8s-check` (docs/deployment.md): no cluster runs
// here, so the manifests under deploy/kubernetes are decoded strictly into
// the official k8s.io/api types (an unknown field is an error, as with the
// API server's strict field validation) and checked against toolgate
// itself: the ConfigMap's configuration is parsed by toolgate's config
// package, its listen port must be the container port the probes and the
// Service use, the policy ConfigMap must be the embedded default policy, and
// the probes' paths must answer 200 from the toolgate binary.
//
//	go run . [-update] [-toolgate BINARY] [DIR]
//
// It is a module of its own so that k8s.io/api stays out of toolgate's.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/toolgate/toolgate/rego"
	"gopkg.in/yaml.v3"
)

func main() {
	update := flag.Bool("update", false, "rewrite "+policyMap+" from the embedded default policy")
	bin := flag.String("toolgate", "", "a toolgate binary whose probes' answers to check")
	flag.Parse()
	dir := ".."
	if flag.NArg() > 0 {
		dir = flag.Arg(0)
	}
	if err := run(dir, *bin, *update); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-check:", err)
		os.Exit(1)
	}
	fmt.Println("k8s-check: ok")
}

func run(dir, bin string, update bool) error {
	if update {
		b, err := policyConfigMap(rego.FS)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, policyMap), b, 0o644); err != nil {
			return err
		}
	}
	probes, err := checkTree(dir, rego.FS)
	if err != nil {
		return err
	}
	if bin == "" {
		return nil
	}
	return askBinary(bin, probes)
}

// policyConfigMap is the ConfigMap toolgate-policy holding files, each as
// a literal block so that the policy stays readable in the manifest.
func policyConfigMap(files fs.FS) ([]byte, error) {
	data, err := defaultPolicy(files)
	if err != nil {
		return nil, err
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }
	mapping := func(kv ...*yaml.Node) *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Content: kv} }
	dataNode := mapping()
	for _, name := range slices.Sorted(maps.Keys(data)) {
		dataNode.Content = append(dataNode.Content, str(name), &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.LiteralStyle, Value: data[name]})
	}
	doc := mapping(
		str("apiVersion"), str("v1"),
		str("kind"), str("ConfigMap"),
		str("metadata"), mapping(str("name"), str("toolgate-policy"), str("labels"), mapping(str("app.kubernetes.io/name"), str("toolgate"))),
		str("data"), dataNode,
	)
	doc.HeadComment = "The default policy (rego/), mounted at policy.dir (/etc/toolgate/policy) and\n" +
		"hot-reloaded when it changes. Generated: `make k8s-check K8S_CHECK_FLAGS=-update`\n" +
		"after a change to rego/. To ship your own policy, replace this file (keep the\n" +
		"name toolgate-policy) and drop the equality check, or use an OPA bundle server."
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// askBinary starts the binary on the development default (on a port of
// the system's choosing) and GETs each probe path: each must answer 200.
func askBinary(bin string, paths []string) error {
	bin, err := filepath.Abs(bin) // the command runs in tmp
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "k8s-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0")
	cmd.Dir = tmp
	cmd.Env = []string{"TOOLGATE_DEV_KEY=" + filepath.Join(tmp, "dev-key.pem")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Address string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "toolgate listening" {
				addr <- line.Address
			}
		}
		io.Copy(io.Discard, stderr)
		close(addr)
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			return fmt.Errorf("%s exited before it listened", bin)
		}
		base = "http://" + a
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not listen within 30s", bin)
	}
	for _, p := range paths {
		// /readyz may be 503 for a moment after the listener opens.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get(base + p)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("a probe GETs %s, which toolgate answers %s", p, resp.Status)
			}
		}
	}
	return nil
}
