package config

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/idp"
)

// config is a leaf: it imports no other package of toolgate, so that the
// packages it configures are joined by the wiring (internal/wire), not by
// config.
func TestConfigImportsNoToolgatePackage(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(path, "github.com/toolgate/toolgate/") {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}

// The vocabularies config checks a file against are idp's: the provider
// presets and the asymmetric JWS algorithms (policy.bundle.signing_algorithm
// accepts what tokens may be signed with).
func TestVocabulariesAreIdPs(t *testing.T) {
	if !slices.Equal(providers, idp.Providers) {
		t.Errorf("providers = %v, idp.Providers = %v", providers, idp.Providers)
	}
	if !slices.Equal(signingAlgorithms, idp.Algorithms) {
		t.Errorf("signingAlgorithms = %v, idp.Algorithms = %v", signingAlgorithms, idp.Algorithms)
	}
}

// A configured URL is refused exactly when idp would refuse to fetch it,
// with the same words.
func TestCheckURLIsIdPs(t *testing.T) {
	for _, u := range []string{
		"https://a.example", "https://a.example/path?q=1", "http://127.0.0.1:8080", "http://127.1.2.3",
		"http://localhost", "http://LocalHost:1", "http://[::1]:80", "http://a.example", "http://127.0.0.1.nip.io",
		"ftp://a.example", "a.example/path", "stytch.com/project-1", "", "https://", "http://[::1", "javascript:alert(1)",
	} {
		want := ""
		if err := idp.CheckFetchURL(u); err != nil {
			want = err.Error()
		}
		if got := checkURL(u); got != want {
			t.Errorf("checkURL(%q) = %q, idp.CheckFetchURL says %q", u, got, want)
		}
	}
	for _, h := range []string{"localhost", "LOCALHOST", "127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "example.com", "", "[::1]"} {
		if got, want := isLoopbackHost(h), idp.IsLoopbackHost(h); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, idp.IsLoopbackHost says %v", h, got, want)
		}
	}
}
