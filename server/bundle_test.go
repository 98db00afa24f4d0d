package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
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

// bundleServer serves one bundle at a time with an ETag, answering 304 to
// a client that already has it.
type bundleServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	etag   string
	served atomic.Int32 // 200 answers
}

func newBundleServer(t *testing.T) *bundleServer {
	bs := &bundleServer{}
	bs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bs.mu.Lock()
		body, etag := bs.body, bs.etag
		bs.mu.Unlock()
		if r.Header.Get("If-None-Match") != "" && strings.Contains(r.Header.Get("If-None-Match"), etag) {
			w.Header().Set("ETag", etag) // RFC 9110 §15.4.5
			w.WriteHeader(http.StatusNotModified)
			return
		}
		bs.served.Add(1)
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(body)
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

// opaBuild makes a bundle of a policy directory with the OPA command line
// at the library's version, signed when key is set.
func opaBuild(t *testing.T, dir, signingKey string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	args := []string{"tool", "opa", "build", "-b", dir, "-o", out, "--revision", filepath.Base(dir)}
	if signingKey != "" {
		args = append(args, "--signing-key", signingKey, "--signing-alg", "RS256")
	}
	cmd := exec.Command("go", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// policyVariant is the default policy with its data replaced.
func policyVariant(t *testing.T, data string) string {
	dir := copyPolicy(t)
	os.Remove(filepath.Join(dir, "policy_test.rego"))
	os.Remove(filepath.Join(dir, "prompts_resources_test.rego"))
	if data != "" {
		os.WriteFile(filepath.Join(dir, "data.json"), []byte(data), 0o644)
	}
	return dir
}

func rsaKeyFiles(t *testing.T) (private, public string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	private, public = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	return private, public
}

func withBundle(url, signingKey string) gateOption {
	return func(c *config.Config, _ *server.Options) {
		c.Policy.Dir = ""
		c.Policy.Bundle.URL = url
		c.Policy.Bundle.PollingInterval = 100 * time.Millisecond
		c.Policy.Bundle.SigningKey = signingKey
	}
}

const onlyAdd = `{"tool_rules": {"add": {}}}`

func TestPolicyBundles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bundles with the opa command line")
	}
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	private, public := rsaKeyFiles(t)
	otherPrivate, _ := rsaKeyFiles(t)
	defaultBundle := opaBuild(t, policyVariant(t, ""), "")
	onlyAddBundle := opaBuild(t, policyVariant(t, onlyAdd), "")
	unknownToolBundle := opaBuild(t, policyVariant(t, `{"tool_rules": {"add": {}, "no_such_tool": {}}}`), "")

	t.Run("an update is picked up, an unchanged bundle is not fetched again", func(t *testing.T) {
		bs := newBundleServer(t)
		bs.serve(defaultBundle)
		g := startGate(t, []*idptest.Tenant{tn}, withBundle(bs.URL+"/bundles/toolgate.tar.gz", ""))
		c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
		if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "whoami"}) {
			t.Fatalf("first bundle: %v", got)
		}
		time.Sleep(500 * time.Millisecond) // several polls
		if n := bs.served.Load(); n != 1 {
			t.Errorf("the unchanged bundle was downloaded %d times; ETags should make it once", n)
		}
		bs.serve(onlyAddBundle)
		waitFor(t, "the new bundle", func() bool { return slices.Equal(toolNames(t, c), []string{"add"}) })
	})

	t.Run("a bad bundle is rejected and the last good one keeps serving", func(t *testing.T) {
		bs := newBundleServer(t)
		bs.serve(defaultBundle)
		g := startGate(t, []*idptest.Tenant{tn}, withBundle(bs.URL+"/b.tar.gz", ""))
		c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
		before := g.srv.Policy().Revision()
		for _, bad := range []struct {
			name string
			body []byte
		}{{"not a bundle", []byte("garbage")}, {"a bundle that fails the policy check", unknownToolBundle}} {
			name, body := bad.name, bad.body
			bs.serve(body)
			waitFor(t, name+" to be refused", func() bool {
				_, b := g.readyz()
				return b["policy_reload_error"] != nil
			})
			if g.srv.Policy().Revision() != before {
				t.Errorf("%s was swapped in", name)
			}
			if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "whoami"}) {
				t.Errorf("after %s: %v", name, got)
			}
			bs.serve(defaultBundle)
			waitFor(t, "the good bundle again", func() bool { _, b := g.readyz(); return b["policy_reload_error"] == nil })
		}
	})

	t.Run("signed bundles: only the trusted key's signature is accepted", func(t *testing.T) {
		bs := newBundleServer(t)
		bs.serve(opaBuild(t, policyVariant(t, ""), private))
		g := startGate(t, []*idptest.Tenant{tn}, withBundle(bs.URL+"/signed.tar.gz", public))
		c := g.connect(tn.Token(idptest.Claims{Audience: []string{g.Config.ResourceURL()}}))
		for _, bad := range []struct {
			name string
			body []byte
		}{{"signed by another key", opaBuild(t, policyVariant(t, onlyAdd), otherPrivate)}, {"unsigned", onlyAddBundle}} {
			name, body := bad.name, bad.body
			bs.serve(body)
			waitFor(t, name+" to be refused", func() bool { _, b := g.readyz(); return b["policy_reload_error"] != nil })
			if got := sorted(toolNames(t, c)); !slices.Equal(got, []string{"add", "whoami"}) {
				t.Errorf("%s was loaded: %v", name, got)
			}
		}
		bs.serve(opaBuild(t, policyVariant(t, onlyAdd), private))
		waitFor(t, "the properly signed update", func() bool { return slices.Equal(toolNames(t, c), []string{"add"}) })
	})
}
