package config

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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

// TestCheckURL: https anywhere, http only on loopback, nothing else.
func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://t.auth0.com/.well-known/jwks.json", true},
		{"https://10.0.0.1/jwks", true},
		{"http://127.0.0.1:8080/jwks", true},
		{"http://127.8.9.10/jwks", true},
		{"http://localhost:4444/.well-known/jwks.json", true},
		{"http://[::1]:4444/jwks", true},
		{"http://jwks.example.com/keys", false},
		{"http://10.0.0.1/jwks", false},
		{"http://0.0.0.0/jwks", false},
		{"http://[::ffff:10.0.0.1]/jwks", false},
		{"http://localhost.evil.example/jwks", false},
		{"http://127.0.0.1.nip.io/jwks", false},
		{"http://evil.example/?host=127.0.0.1", false},
		{"http://127.0.0.1@evil.example/jwks", false},
		{"ftp://127.0.0.1/jwks", false},
		{"file:///etc/passwd", false},
		{"//t.auth0.com/jwks", false},
		{"/.well-known/jwks.json", false},
		{"t.auth0.com/jwks", false},
		{"", false},
		{"https://", false},
		{"http://[::1", false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			err := CheckURL(tc.url)
			if (err == nil) != tc.ok {
				t.Errorf("CheckURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.255.255.254": true, "::1": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "example.com": false,
		"localhost.": false, "127.0.0.1.example.com": false, "[::1]": false,
	} {
		if got := IsLoopbackHost(h); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", h, got, want)
		}
	}
}
