package idp_test

import (
	"context"
	"testing"
	"time"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/idp/idptest"
)

func benchVerifier(b *testing.B, cacheSize int) (*idp.Verifier, string) {
	tn := idptest.NewTenant(b, idptest.ProviderAuth0)
	v, err := idp.NewVerifier([]idp.Issuer{{Name: "auth0", Provider: "auth0", Issuer: tn.Issuer(), Audiences: []string{"https://mcp.example.com/mcp"}}},
		idp.Options{CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	v.Start(context.Background())
	b.Cleanup(v.Close)
	for deadline := time.Now().Add(5 * time.Second); len(v.Pending()) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("keys not loaded")
		}
	}
	tok := tn.Token(idptest.Claims{Audience: []string{"https://mcp.example.com/mcp"}, Scopes: []string{"openid", "images:write"}, Permissions: []string{"image_generation"}})
	return v, tok
}

// First sight: every verification parses the token and checks its RS256
// signature (the cache is off).
func BenchmarkVerifyFirstSight(b *testing.B) {
	v, tok := benchVerifier(b, -1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// Repeat: the token was verified before; the cache answers.
func BenchmarkVerifyRepeat(b *testing.B) {
	v, tok := benchVerifier(b, 0)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
