// Command recorder is the e2e tests' upstream of the project's own: the
// tools of upstream/upstreamtest (echo, session, env, slow) plus
// whoami_upstream, served over Streamable HTTP on loopback behind a bearer
// check, as a real upstream protected by OAuth would be. Every request must
// carry a JWT (RFC 7519) signed by a key of -jwks, issued by -issuer, for
// -audience; one that does not gets 401 (RFC 6750 §3.1). Every request is
// written as one JSON line to -log, with the SHA-256 of the bearer token
// (never the token), its verified claims and the request's headers, so that
// e2e/tests/gateway.test.mjs can prove what reached the upstream: never the
// client's token or session, Hydra's client-credentials token, or
// toolgate's assertion naming the user.
//
//	recorder -listen 127.0.0.1:PORT -jwks URL -issuer ISS -audience AUD -log FILE
//
// The keys are fetched when a token names a kid the recorder does not hold
// (at most once a second): toolgate's assertion key changes with every
// restart, and docs/configuration.md asks upstreams to do exactly this.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"golang.org/x/time/rate"

	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// Record is one line of the log: one HTTP request.
type Record struct {
	Time   time.Time `json:"time"`
	HTTP   string    `json:"http"`   // GET, POST, DELETE
	Method string    `json:"method"` // the JSON-RPC method, "" for none
	// Header is every request header but Authorization, whose bearer token
	// is TokenSHA256.
	Header      http.Header    `json:"header"`
	TokenSHA256 string         `json:"token_sha256,omitempty"`
	Claims      map[string]any `json:"claims,omitempty"` // when verified
	Error       string         `json:"error,omitempty"`  // why it was refused
}

type claimsKey struct{}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	jwks := flag.String("jwks", "", "JWK Set URL of the keys that sign the bearer tokens")
	issuer := flag.String("issuer", "", "the tokens' iss")
	audience := flag.String("audience", "", "the tokens' aud must hold this")
	logFile := flag.String("log", "", "file the requests are written to, one JSON object a line")
	flag.Parse()
	if *jwks == "" || *issuer == "" || *audience == "" || *logFile == "" {
		log.Fatal("recorder: -jwks, -issuer, -audience and -log are required")
	}
	out, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	noFirstErr := true
	keys, err := keyfunc.NewDefaultOverrideCtx(context.Background(), []string{*jwks}, keyfunc.Override{
		HTTPTimeout:               2 * time.Second,
		NoErrorReturnFirstHTTPReq: &noFirstErr, // toolgate's keys exist only once it serves
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(time.Second), 1),
	})
	if err != nil {
		log.Fatal(err)
	}
	parser := jwt.NewParser(jwt.WithIssuer(*issuer), jwt.WithAudience(*audience),
		jwt.WithExpirationRequired(), jwt.WithValidMethods([]string{"RS256", "ES256"}))

	s := upstreamtest.NewMCPServer()
	s.AddTool(mcp.NewTool("whoami_upstream",
		mcp.WithDescription("The verified claims of the bearer token this request reached the upstream with."),
		mcp.WithReadOnlyHintAnnotation(true)),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			claims, _ := ctx.Value(claimsKey{}).(jwt.MapClaims)
			return mcp.NewToolResultStructured(claims, mustJSON(claims)), nil
		})
	mcpHandler := mcpserver.NewStreamableHTTPServer(s)

	var mu sync.Mutex
	write := func(r Record) {
		b, _ := json.Marshal(r)
		mu.Lock()
		defer mu.Unlock()
		_, _ = out.Write(append(b, '\n'))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		body, method := peekMethod(r)
		rec := Record{Time: time.Now().UTC(), HTTP: r.Method, Method: method, Header: r.Header.Clone()}
		rec.Header.Del("Authorization")
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var claims jwt.MapClaims
		var err error
		switch {
		case !ok || raw == "":
			err = errors.New("no bearer token")
		default:
			sum := sha256.Sum256([]byte(raw))
			rec.TokenSHA256 = hex.EncodeToString(sum[:])
			// A key fetch is bounded: toolgate accepts connections before it
			// serves its JWKS (see e2e/README.md), and an unbounded fetch
			// would hold toolgate's first listing until its timeout.
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			_, err = parser.ParseWithClaims(raw, &claims, keys.KeyfuncCtx(ctx))
			cancel()
		}
		if err != nil {
			rec.Error = err.Error()
			write(rec)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "invalid token", http.StatusUnauthorized)
			return
		}
		rec.Claims = claims
		write(rec)
		r.Body = body
		mcpHandler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims)))
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("recorder: listening on %s (issuer %s, audience %s)", *listen, *issuer, *audience)
	log.Fatal(srv.ListenAndServe())
}

// peekMethod reads the JSON-RPC method of a POST's body and gives back a
// body to read again.
func peekMethod(r *http.Request) (io.ReadCloser, string) {
	if r.Body == nil {
		return http.NoBody, ""
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	var msg struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(b, &msg)
	return io.NopCloser(bytes.NewReader(b)), msg.Method
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
