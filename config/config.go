// Package config reads toolgate's YAML configuration: defaults first, then the
// file, then validation that reports every problem at once
// (docs/configuration.md, "How the file is read"). It is a leaf: it imports
// no other package of toolgate, and internal/wire turns a Config into the
// options of the packages it configures.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	Listen          string      `yaml:"listen"`
	PublicURL       string      `yaml:"public_url"`
	AllowedOrigins  []string    `yaml:"allowed_origins"`
	ScopesSupported []string    `yaml:"scopes_supported"`
	Issuers         []Issuer    `yaml:"issuers"`
	Policy          Policy      `yaml:"policy"`
	Metrics         Metrics     `yaml:"metrics"`
	Anonymous       bool        `yaml:"anonymous"`
	Tokens          Tokens      `yaml:"tokens"`
	Limits          Limits      `yaml:"limits"`
	DecisionLog     DecisionLog `yaml:"decision_log"`
	// BuiltinTools serves the tools compiled into toolgate (add,
	// image_generation, whoami); false makes toolgate a pure gateway.
	BuiltinTools bool       `yaml:"builtin_tools"`
	Upstreams    []Upstream `yaml:"upstreams"`
	// LockFile is the reviewed digests of the upstreams' tools, written by
	// `toolgate upstream lock` (docs/configuration.md, "Pinning upstream
	// tools"). Load resolves a relative path against the configuration
	// file's directory.
	LockFile string   `yaml:"lock_file"`
	Sessions Sessions `yaml:"sessions"`
}

// Sessions says how the MCP sessions of a fleet of replicas are shared
// (docs/architecture.md, "A fleet").
type Sessions struct {
	// KeyEnv names the environment variable that holds the fleet's
	// session key: every replica with it can verify the session ids the
	// others mint. Empty: a session serves on the replica that opened it
	// only.
	KeyEnv string `yaml:"key_env"`
}

// Upstream is an MCP server whose tools toolgate serves behind its policy
// (docs/configuration.md, "Upstream MCP servers").
type Upstream struct {
	// Name is the tool's server in the policy input; [a-z0-9-]{1,32}.
	Name string `yaml:"name"`
	// Command starts a stdio server; URL names a Streamable HTTP one.
	// Exactly one is set.
	Command []string `yaml:"command"`
	URL     string   `yaml:"url"`
	// Env is the whole environment of a stdio server, besides PATH and
	// HOME: toolgate's own is never inherited.
	Env map[string]string `yaml:"env"`
	// Prefix is put before each of the upstream's tool names; nil until
	// Validate sets the default, "<name>_". "" is allowed.
	Prefix *string `yaml:"prefix"`
	// Sessions is per_principal (one upstream session, or process, per
	// iss+sub) or shared (one for everybody).
	Sessions string `yaml:"sessions"`
	// Timeout bounds one upstream request.
	Timeout time.Duration `yaml:"timeout"`
	// MaxProcesses caps the stdio processes of a per_principal upstream.
	MaxProcesses int `yaml:"max_processes"`
	// IdleTimeout stops a principal's session (process) unused this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxResultBytes caps one message from the upstream (a result, a
	// notification): past it the call fails and nothing more is read.
	MaxResultBytes int64        `yaml:"max_result_bytes"`
	Auth           UpstreamAuth `yaml:"auth"`
	// Pin serves only the tools whose definition matches the lock file.
	Pin bool `yaml:"pin"`
}

// DefaultMaxResultBytes is upstreams[].max_result_bytes unless set: 16 MiB.
const DefaultMaxResultBytes = 16 << 20

// UpstreamAuth is how toolgate authenticates itself to an upstream. Secrets
// are named by environment variable, never written in the file.
type UpstreamAuth struct {
	// Type is none, header, client_credentials or assertion.
	Type string `yaml:"type"`
	// header: HeaderName: <value of the environment variable ValueEnv>.
	HeaderName string `yaml:"header_name"`
	ValueEnv   string `yaml:"value_env"`
	// client_credentials (RFC 6749 §4.4) at TokenURL.
	TokenURL        string   `yaml:"token_url"`
	ClientID        string   `yaml:"client_id"`
	ClientSecretEnv string   `yaml:"client_secret_env"`
	Scopes          []string `yaml:"scopes"`
	// Audience: client_credentials' audience parameter, or the aud of an
	// assertion.
	Audience string `yaml:"audience"`
}

// The values of an upstream's sessions and auth.type.
var (
	UpstreamSessions  = []string{"per_principal", "shared"}
	UpstreamAuthTypes = []string{"none", "header", "client_credentials", "assertion"}
)

// DecisionLog says where and how decisions are logged.
type DecisionLog struct {
	// Output is stderr, stdout, or a file path (appended).
	Output string `yaml:"output"`
	// Arguments is full (log them), hash (a SHA-256 of them) or none.
	Arguments string `yaml:"arguments"`
	// Redact names arguments whose values are replaced by "[redacted]".
	Redact []string `yaml:"redact"`
	// FlushInterval is how long a line may wait to be written with others;
	// 0 writes each line at once. Lines waiting are written on shutdown.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// Issuer is one trusted authorization server.
type Issuer struct {
	Name     string     `yaml:"name"`
	Provider string     `yaml:"provider"`
	Issuer   string     `yaml:"issuer"`
	Audience StringList `yaml:"audience"`
	JWKSURL  string     `yaml:"jwks_url"`
}

// Policy says where the Rego policies live.
type Policy struct {
	// Dir holds *.rego modules and data files; empty means the default policy
	// compiled into the binary.
	Dir string `yaml:"dir"`
	// DryRun evaluates and logs every decision but hides and refuses
	// nothing: for rolling out a new policy.
	DryRun bool `yaml:"dry_run"`
	// DecisionCacheSize bounds the per-revision caches of visible sets and
	// call decisions (0 turns them off, for policies that read the clock or
	// the network).
	DecisionCacheSize int `yaml:"decision_cache_size"`
	// EvalTimeout bounds one evaluation; past it the decision is a denial.
	EvalTimeout time.Duration `yaml:"eval_timeout"`
	// Bundle loads the policy from an OPA bundle server instead of Dir.
	Bundle Bundle `yaml:"bundle"`
}

// Bundle is an OPA bundle to poll: how a fleet of replicas gets one policy.
type Bundle struct {
	URL             string        `yaml:"url"`
	PollingInterval time.Duration `yaml:"polling_interval"`
	// SigningKey is a PEM public key, or a path to one; when set every
	// bundle must carry a valid signature by it.
	SigningKey string `yaml:"signing_key"`
	KeyID      string `yaml:"signing_key_id"`
	Algorithm  string `yaml:"signing_algorithm"`
	// StartupTimeout bounds the wait for the first bundle.
	StartupTimeout time.Duration `yaml:"startup_timeout"`
}

// Metrics says where /metrics is served.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Tokens tunes token validation and the JWKS cache (docs/providers.md,
// "How a token is validated").
type Tokens struct {
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration `yaml:"leeway"`
	// JWKSUnknownKIDInterval bounds refreshes caused by an unknown kid: at most
	// one per issuer per interval.
	JWKSUnknownKIDInterval time.Duration `yaml:"jwks_unknown_kid_interval"`
	// JWKSRefreshInterval is the period of the background refresh.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// JWKSTimeout bounds one JWKS or discovery fetch.
	JWKSTimeout time.Duration `yaml:"jwks_timeout"`
	// CacheSize bounds the cache of verified tokens (0 turns it off).
	CacheSize int `yaml:"cache_size"`
}

// Limits bounds what one request, or one principal, may cost.
type Limits struct {
	// MaxBodyBytes is the largest request body accepted on /mcp (413 above).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxJSONDepth is the deepest nesting of a request body (400 above).
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxSessionsPerPrincipal bounds the open MCP sessions of one
	// principal (429 above).
	MaxSessionsPerPrincipal int `yaml:"max_sessions_per_principal"`
	// MaxAnonymousSessionsPerAddress bounds the open sessions and streams of
	// token-less clients from one address (anonymous: true), so that one
	// client cannot take every anonymous place (429 above).
	MaxAnonymousSessionsPerAddress int `yaml:"max_anonymous_sessions_per_address"`
	// Store counts the calls the policy's limits rule limits
	// (docs/policy-contract.md, "limits"): memory (each replica counts on
	// its own) or a redis:// or rediss:// (TLS) URL that replicas share.
	Store string `yaml:"store"`
	// StorePasswordEnv names the environment variable holding the Redis
	// password: the file never holds it.
	StorePasswordEnv string `yaml:"store_password_env"`
	// StoreTimeout bounds one exchange with the store.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// OnStoreError is what a limited call gets while the store cannot be
	// reached: deny (refused, the default) or allow (run uncounted).
	OnStoreError string `yaml:"on_store_error"`
}

// The values of limits.on_store_error.
var OnStoreErrors = []string{"deny", "allow"}

// StringList accepts a YAML string or a list of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = StringList{s}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// Default returns the configuration that a file starts from.
func Default() *Config {
	return &Config{
		Listen:          "127.0.0.1:8080",
		AllowedOrigins:  []string{},
		ScopesSupported: []string{},
		Tokens: Tokens{
			Leeway:                 30 * time.Second,
			JWKSUnknownKIDInterval: 10 * time.Second,
			JWKSRefreshInterval:    5 * time.Minute,
			JWKSTimeout:            5 * time.Second,
			CacheSize:              10000,
		},
		Policy: Policy{DecisionCacheSize: 10000, EvalTimeout: time.Second,
			Bundle: Bundle{PollingInterval: 30 * time.Second, KeyID: "default", Algorithm: "RS256", StartupTimeout: 30 * time.Second}},
		Limits: Limits{MaxBodyBytes: 1 << 20, MaxJSONDepth: 64, MaxSessionsPerPrincipal: 100, MaxAnonymousSessionsPerAddress: 100,
			Store: "memory", StoreTimeout: 250 * time.Millisecond, OnStoreError: "deny"},
		DecisionLog:  DecisionLog{Output: "stderr", Arguments: "full", Redact: []string{}, FlushInterval: 100 * time.Millisecond},
		BuiltinTools: true,
		LockFile:     "toolgate.lock",
	}
}

// Load reads and validates the file at path. A relative lock_file is
// taken beside it: the lock is reviewed and committed with the
// configuration, wherever toolgate is started from.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(c.LockFile) {
		c.LockFile = filepath.Join(filepath.Dir(path), c.LockFile)
	}
	return c, nil
}

// Parse decodes YAML over the defaults and validates the result. Every
// problem is reported, one per line of the error: unknown and repeated keys
// (found by walking the document against Config's fields), values of the
// wrong type (from the decoder), and invalid values (Validate). Only a
// syntax error, or a document the decoder cannot follow (an alias that
// contains itself), stops it early.
func Parse(b []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var problems []string
	// A second document would be silently ignored; its keys deserve the
	// same refusal as unknown ones.
	switch err := dec.Decode(&next); {
	case err == nil:
		problems = append(problems, fmt.Sprintf("line %d: a second YAML document; the file holds one configuration", next.Line))
	case !errors.Is(err, io.EOF):
		problems = append(problems, oneLine.Replace(err.Error()))
	}
	c := Default()
	if len(doc.Content) > 0 {
		problems = append(problems, checkKeys(doc.Content[0], reflect.TypeFor[Config](), "")...)
		// Decoding leniently: checkKeys has reported the unknown keys, and
		// dropped the repeated ones, which would make the decoder skip
		// their whole mapping.
		var te *yaml.TypeError
		if err := doc.Decode(c); errors.As(err, &te) {
			for _, e := range te.Errors {
				problems = append(problems, oneLine.Replace(e))
			}
		} else if err != nil {
			// Not a value of the wrong type but a broken document (an
			// alias that contains itself, a bad merge): validating what
			// was decoded would only add noise.
			return nil, errors.New(strings.Join(append(problems, oneLine.Replace(err.Error())), "\n"))
		}
	}
	if err := c.Validate(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return c, nil
}

// oneLine escapes the line breaks of a decoder's message, which may quote a
// key or value as written: each problem stays on one line.
var oneLine = strings.NewReplacer("\r", `\r`, "\n", `\n`)

// checkKeys walks the YAML node n, to be decoded into a value of type t at
// path, and reports every mapping key that names no field and every key
// given twice in one mapping, with its line. It removes the repeats from n:
// the decoder refuses a whole mapping that repeats a key, and the rest of
// that mapping still deserves checking. Values of the wrong shape are left
// to the decoder, which reports them.
func checkKeys(n *yaml.Node, t reflect.Type, path string) []string {
	switch {
	case t.Kind() == reflect.Struct:
		return checkMapping(n, t, path, map[*yaml.Node]bool{})
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		var problems []string
		if n = resolve(n); n.Kind == yaml.SequenceNode {
			for i, e := range n.Content {
				problems = append(problems, checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
		return problems
	}
	return nil
}

// checkMapping is checkKeys for one struct. Mappings merged in with "<<"
// (YAML merge key) are checked against the same struct; seen stops a merge
// that includes itself.
func checkMapping(n *yaml.Node, t reflect.Type, path string, seen map[*yaml.Node]bool) []string {
	n = resolve(n)
	if n.Kind != yaml.MappingNode || seen[n] {
		return nil
	}
	seen[n] = true
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	var problems []string
	firstLine := map[string]int{}
	kept := make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			// Dropped: it names no field, and beside a merge key it makes
			// yaml.v3 v3.0.1 panic (an unhashable map key).
			in := ""
			if path != "" {
				in = " in " + path
			}
			problems = append(problems, fmt.Sprintf("line %d: a key that is not a name%s", k.Line, in))
			continue
		}
		at := keyPath(path, k)
		// The decoder's own test for a repeat: same kind (here a scalar),
		// same text.
		if line, ok := firstLine[k.Value]; ok {
			problems = append(problems, fmt.Sprintf("line %d: %s: given twice (first at line %d)", k.Line, at, line))
			continue
		}
		firstLine[k.Value] = k.Line
		kept = append(kept, k, v)
		if k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.Tag == "!!merge") { // as yaml.v3 tells a merge key
			for _, m := range mergedMappings(v) {
				problems = append(problems, checkMapping(m, t, path, seen)...)
			}
			continue
		}
		ft, ok := fields[k.Value]
		if !ok {
			problems = append(problems, fmt.Sprintf("line %d: %s: unknown key", k.Line, at))
			continue
		}
		problems = append(problems, checkKeys(v, ft, at)...)
	}
	n.Content = kept
	return problems
}

// mergedMappings are the mappings a merge key's value names: one mapping,
// or a sequence of them (https://yaml.org/type/merge.html).
func mergedMappings(v *yaml.Node) []*yaml.Node {
	if v = resolve(v); v.Kind == yaml.SequenceNode {
		return v.Content
	}
	return []*yaml.Node{v}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// keyPath is path extended by the key k, quoted unless it is a plain name.
func keyPath(path string, k *yaml.Node) string {
	name := k.Value
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		name = strconv.Quote(name)
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

// ResourceURL is the protected resource: public_url + "/mcp" (RFC 9728 §2).
func (c *Config) ResourceURL() string { return c.PublicURL + "/mcp" }

// Validate fills derived defaults and checks every field, returning all
// problems joined by newlines.
func (c *Config) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }

	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		bad("listen: %q is not host:port", c.Listen)
	}
	if c.PublicURL == "" && err == nil && IsLoopbackHost(host) {
		c.PublicURL = "http://" + c.Listen
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	switch {
	case c.PublicURL == "":
		bad("public_url: required when listen is not a loopback address")
	default:
		if err := CheckURL(c.PublicURL); err != nil {
			bad("public_url: %v", err)
		} else if u, _ := url.Parse(c.PublicURL); u.RawQuery != "" || u.Fragment != "" {
			bad("public_url: %q must not have a query or fragment", c.PublicURL)
		}
	}
	for i, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad("allowed_origins[%d]: %q is not an origin (scheme://host[:port])", i, o)
		}
	}
	if len(c.Issuers) == 0 && !c.Anonymous {
		bad("issuers: at least one issuer is required (or anonymous: true)")
	}
	seen := map[string]bool{}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		at := fmt.Sprintf("issuers[%d]", i)
		if !slices.Contains(Providers, is.Provider) {
			bad("%s.provider: %q is not one of %s", at, is.Provider, strings.Join(Providers, ", "))
		}
		if is.Issuer == "" {
			bad("%s.issuer: required", at)
		} else if seen[is.Issuer] {
			bad("%s.issuer: %q is configured twice", at, is.Issuer)
		}
		seen[is.Issuer] = true
		if is.Name == "" {
			is.Name = is.Issuer
		}
		if len(is.Audience) == 0 && c.PublicURL != "" {
			is.Audience = StringList{c.ResourceURL()}
		}
		for j, a := range is.Audience {
			if a == "" {
				bad("%s.audience[%d]: empty", at, j)
			}
		}
		if is.JWKSURL != "" {
			if err := CheckURL(is.JWKSURL); err != nil {
				bad("%s.jwks_url: %v", at, err)
			}
		} else if is.Issuer != "" {
			// The JWKS URL will be derived from the issuer, so it must be a URL
			// that toolgate may fetch.
			if err := CheckURL(is.Issuer); err != nil {
				bad("%s.issuer: %v; set jwks_url when the issuer is not a fetchable URL", at, err)
			}
		}
	}
	t := c.Tokens
	if t.Leeway < 0 || t.Leeway > 5*time.Minute {
		bad("tokens.leeway: %s is outside 0s..5m", t.Leeway)
	}
	if t.JWKSUnknownKIDInterval < time.Second || t.JWKSUnknownKIDInterval > time.Minute {
		bad("tokens.jwks_unknown_kid_interval: %s is outside 1s..1m", t.JWKSUnknownKIDInterval)
	}
	if t.JWKSRefreshInterval < 10*time.Second || t.JWKSRefreshInterval > 24*time.Hour {
		bad("tokens.jwks_refresh_interval: %s is outside 10s..24h", t.JWKSRefreshInterval)
	}
	if t.JWKSTimeout < 100*time.Millisecond || t.JWKSTimeout > 30*time.Second {
		bad("tokens.jwks_timeout: %s is outside 100ms..30s", t.JWKSTimeout)
	}
	if t.CacheSize < 0 || t.CacheSize > 1000000 {
		bad("tokens.cache_size: %d is outside 0..1000000", t.CacheSize)
	}
	if c.Policy.DecisionCacheSize < 0 || c.Policy.DecisionCacheSize > 1000000 {
		bad("policy.decision_cache_size: %d is outside 0..1000000", c.Policy.DecisionCacheSize)
	}
	if b := c.Policy.Bundle; b.URL != "" {
		if c.Policy.Dir != "" {
			bad("policy: dir and bundle.url are exclusive; choose one")
		}
		if err := CheckURL(b.URL); err != nil {
			bad("policy.bundle.url: %v", err)
		}
		if b.PollingInterval < 100*time.Millisecond || b.PollingInterval > time.Hour {
			bad("policy.bundle.polling_interval: %s is outside 100ms..1h", b.PollingInterval)
		}
		if b.StartupTimeout < time.Second || b.StartupTimeout > 10*time.Minute {
			bad("policy.bundle.startup_timeout: %s is outside 1s..10m", b.StartupTimeout)
		}
		if !slices.Contains(SigningAlgorithms, b.Algorithm) {
			bad("policy.bundle.signing_algorithm: %q is not an asymmetric JWS algorithm", b.Algorithm)
		}
	}
	if c.Policy.EvalTimeout < time.Millisecond || c.Policy.EvalTimeout > time.Minute {
		bad("policy.eval_timeout: %s is outside 1ms..1m", c.Policy.EvalTimeout)
	}
	if c.Limits.MaxJSONDepth < 8 || c.Limits.MaxJSONDepth > 10000 {
		bad("limits.max_json_depth: %d is outside 8..10000", c.Limits.MaxJSONDepth)
	}
	if c.Limits.MaxSessionsPerPrincipal < 1 || c.Limits.MaxSessionsPerPrincipal > 1000000 {
		bad("limits.max_sessions_per_principal: %d is outside 1..1000000", c.Limits.MaxSessionsPerPrincipal)
	}
	if c.Limits.MaxAnonymousSessionsPerAddress < 1 || c.Limits.MaxAnonymousSessionsPerAddress > 1000000 {
		bad("limits.max_anonymous_sessions_per_address: %d is outside 1..1000000", c.Limits.MaxAnonymousSessionsPerAddress)
	}
	if c.Limits.MaxBodyBytes < 1024 || c.Limits.MaxBodyBytes > 64<<20 {
		bad("limits.max_body_bytes: %d is outside 1024..67108864", c.Limits.MaxBodyBytes)
	}
	errs = append(errs, c.Limits.validateStore()...)
	if !slices.Contains([]string{"full", "hash", "none"}, c.DecisionLog.Arguments) {
		bad("decision_log.arguments: %q is not one of full, hash, none", c.DecisionLog.Arguments)
	}
	if c.DecisionLog.FlushInterval < 0 || c.DecisionLog.FlushInterval > 10*time.Second {
		bad("decision_log.flush_interval: %s is outside 0s..10s", c.DecisionLog.FlushInterval)
	}
	if c.DecisionLog.Output == "" {
		bad("decision_log.output: empty; use stderr, stdout or a file path")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen: %q is not host:port", c.Metrics.Listen)
		}
	}
	if !c.BuiltinTools && len(c.Upstreams) == 0 {
		bad("builtin_tools: false and no upstreams: toolgate would serve no tool")
	}
	if k := c.Sessions.KeyEnv; strings.ContainsAny(k, "=\x00") {
		bad("sessions.key_env: %q is not an environment variable name", k)
	}
	prefixes := map[string]string{}
	names := map[string]bool{}
	for i := range c.Upstreams {
		errs = append(errs, c.Upstreams[i].validate(fmt.Sprintf("upstreams[%d]", i), names, prefixes)...)
		if c.Upstreams[i].Pin && c.LockFile == "" {
			bad("upstreams[%d].pin: true needs a lock_file", i)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// validateStore checks the rate-limit store's keys.
func (l *Limits) validateStore() []string {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, "limits."+fmt.Sprintf(format, a...)) }
	if l.Store != "memory" {
		u, err := url.Parse(l.Store)
		switch {
		case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss"):
			bad("store: %q is not memory nor a redis:// or rediss:// URL", l.Store)
		case u.Hostname() == "":
			bad("store: %q names no host", l.Store)
		default:
			if _, ok := u.User.Password(); ok {
				bad("store: the URL carries a password; name an environment variable with limits.store_password_env")
			}
			if db := strings.TrimPrefix(u.Path, "/"); db != "" {
				if n, err := strconv.Atoi(db); err != nil || n < 0 {
					bad("store: %q is not a database number", u.Path)
				}
			}
			if u.RawQuery != "" || u.Fragment != "" {
				bad("store: the URL has a query or fragment; set the timeout with limits.store_timeout")
			}
		}
	}
	switch {
	case l.StorePasswordEnv != "" && l.Store == "memory":
		bad("store_password_env: only for a Redis store")
	case strings.ContainsAny(l.StorePasswordEnv, "=\x00"):
		bad("store_password_env: %q is not an environment variable name", l.StorePasswordEnv)
	}
	if !slices.Contains(OnStoreErrors, l.OnStoreError) {
		bad("on_store_error: %q is not one of %s", l.OnStoreError, strings.Join(OnStoreErrors, ", "))
	}
	if l.StoreTimeout < 10*time.Millisecond || l.StoreTimeout > 10*time.Second {
		bad("store_timeout: %s is outside 10ms..10s", l.StoreTimeout)
	}
	return errs
}

// validate fills an upstream's defaults and checks it; names and prefixes
// are those of the upstreams before it, which it extends.
func (u *Upstream) validate(at string, names map[string]bool, prefixes map[string]string) []string {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, at+"."+fmt.Sprintf(format, a...)) }
	switch {
	case !isUpstreamName(u.Name):
		bad("name: %q is not 1 to 32 of a-z, 0-9 and -", u.Name)
	case u.Name == "builtin":
		bad(`name: "builtin" names toolgate's own tools in the policy input`)
	case names[u.Name]:
		bad("name: %q is configured twice", u.Name)
	}
	names[u.Name] = true
	switch {
	case len(u.Command) > 0 && u.URL != "":
		bad("command, url: give exactly one")
	case len(u.Command) > 0:
		if u.Command[0] == "" {
			bad("command[0]: empty; name the program to run")
		}
	case u.URL != "":
		if err := CheckURL(u.URL); err != nil {
			bad("url: %v", err)
		}
		if len(u.Env) > 0 {
			bad("env: only for a command (stdio) upstream")
		}
	default:
		bad("command, url: give exactly one")
	}
	for k := range u.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			bad("env: %q is not an environment variable name", k)
		}
	}
	if u.Prefix == nil {
		p := u.Name + "_"
		u.Prefix = &p
	}
	if p := *u.Prefix; p != "" && !IsToolName(p) {
		bad("prefix: %q has characters a tool name may not have (A-Z, a-z, 0-9, _, -, .)", p)
	} else if other, ok := prefixes[p]; ok {
		bad("prefix: %q is also the prefix of upstream %q: their tools' names would collide", p, other)
	} else {
		prefixes[p] = u.Name
	}
	if u.Sessions == "" {
		u.Sessions = "per_principal"
	}
	if !slices.Contains(UpstreamSessions, u.Sessions) {
		bad("sessions: %q is not one of %s", u.Sessions, strings.Join(UpstreamSessions, ", "))
	}
	if u.Timeout == 0 {
		u.Timeout = 30 * time.Second
	}
	if u.Timeout < 100*time.Millisecond || u.Timeout > 10*time.Minute {
		bad("timeout: %s is outside 100ms..10m", u.Timeout)
	}
	if u.MaxProcesses == 0 {
		u.MaxProcesses = 32
	}
	if u.MaxProcesses < 1 || u.MaxProcesses > 10000 {
		bad("max_processes: %d is outside 1..10000", u.MaxProcesses)
	}
	if u.IdleTimeout == 0 {
		u.IdleTimeout = 10 * time.Minute
	}
	if u.IdleTimeout < time.Second || u.IdleTimeout > 24*time.Hour {
		bad("idle_timeout: %s is outside 1s..24h", u.IdleTimeout)
	}
	if u.MaxResultBytes == 0 {
		u.MaxResultBytes = DefaultMaxResultBytes
	}
	if u.MaxResultBytes < 1024 || u.MaxResultBytes > 1<<30 {
		bad("max_result_bytes: %d is outside 1024..1073741824 (1 KiB..1 GiB)", u.MaxResultBytes)
	}
	errs = append(errs, u.Auth.validate(at+".auth")...)
	if len(u.Command) > 0 && slices.Contains(UpstreamAuthTypes, u.Auth.Type) && u.Auth.Type != "none" {
		// toolgate speaks to a stdio process over its pipes: there is no
		// request to carry a credential, and one silently not sent would
		// leave the operator believing the upstream is authenticated.
		bad("auth.type: %s is for a url upstream; a command (stdio) upstream takes none", u.Auth.Type)
	}
	return errs
}

// validate checks that an auth block has the fields of its type, and no
// field of another type.
func (a *UpstreamAuth) validate(at string) []string {
	var errs []string
	bad := func(format string, x ...any) { errs = append(errs, at+"."+fmt.Sprintf(format, x...)) }
	if a.Type == "" {
		a.Type = "none"
	}
	if !slices.Contains(UpstreamAuthTypes, a.Type) {
		bad("type: %q is not one of %s", a.Type, strings.Join(UpstreamAuthTypes, ", "))
		return errs
	}
	fields := []struct {
		key   string
		set   bool
		types []string // the types that take it
	}{
		{"header_name", a.HeaderName != "", []string{"header"}},
		{"value_env", a.ValueEnv != "", []string{"header"}},
		{"token_url", a.TokenURL != "", []string{"client_credentials"}},
		{"client_id", a.ClientID != "", []string{"client_credentials"}},
		{"client_secret_env", a.ClientSecretEnv != "", []string{"client_credentials"}},
		{"scopes", len(a.Scopes) > 0, []string{"client_credentials"}},
		{"audience", a.Audience != "", []string{"client_credentials", "assertion"}},
	}
	for _, f := range fields {
		takes := slices.Contains(f.types, a.Type)
		switch {
		case f.set && !takes:
			bad("%s: not used by type %s", f.key, a.Type)
		case !f.set && takes && f.key != "scopes" && (f.key != "audience" || a.Type == "assertion"):
			bad("%s: required by type %s", f.key, a.Type)
		}
	}
	if a.HeaderName != "" && !isHeaderName(a.HeaderName) {
		bad("header_name: %q is not an HTTP header name", a.HeaderName)
	} else if a.HeaderName != "" && slices.Contains(reservedHeaders, http.CanonicalHeaderKey(a.HeaderName)) {
		bad("header_name: %q is set by toolgate's MCP client itself", a.HeaderName)
	}
	for _, k := range []struct{ key, v string }{{"value_env", a.ValueEnv}, {"client_secret_env", a.ClientSecretEnv}} {
		if k.v != "" && strings.ContainsAny(k.v, "=\x00") {
			bad("%s: %q is not an environment variable name", k.key, k.v)
		}
	}
	if a.TokenURL != "" {
		if err := CheckURL(a.TokenURL); err != nil {
			bad("token_url: %v", err)
		}
	}
	return errs
}

// reservedHeaders are the headers an upstream request's framing and
// session need (MCP Streamable HTTP transport) and the hop-by-hop ones
// (RFC 9110 §7.6.1): an auth header may not replace them.
var reservedHeaders = []string{"Host", "Content-Length", "Content-Type", "Accept", "Connection", "Keep-Alive",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-Id"}

// isHeaderName reports whether s is an HTTP field name (RFC 9110 §5.1: a token).
func isHeaderName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// isUpstreamName reports whether s matches [a-z0-9-]{1,32}.
func isUpstreamName(s string) bool {
	return len(s) >= 1 && len(s) <= 32 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
}

// IsToolName reports whether s is made of the characters an MCP tool name
// may have (MCP server/tools, "Tool names": A-Z, a-z, 0-9, _, - and .),
// 1 to 128 of them. The gateway drops an upstream tool whose name is not one.
func IsToolName(s string) bool {
	return len(s) >= 1 && len(s) <= 128 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '_' || r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

// The vocabularies a configuration is checked against. They are idp's
// (idp.Providers and idp.Algorithms are these lists); they live here
// because config is a leaf that imports no other package of toolgate.
var (
	// Providers are the claim-normalisation presets an issuer may name.
	Providers = []string{"auth0", "workos", "stytch", "oidc"}
	// SigningAlgorithms are the asymmetric JWS algorithms (RFC 7518 §3.1)
	// a token, or a policy bundle, may be signed with.
	SigningAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

// CheckURL refuses a URL that toolgate fetches or publishes unless it is
// absolute https, or http on a loopback host (docs/configuration.md, "URLs
// toolgate fetches or publishes"). idp applies it to the URLs a discovery
// document or a redirect names, too.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q uses http:// on a host that is not loopback; use https://", s)
	default:
		return fmt.Errorf("%q must be an https:// URL", s)
	}
}

// IsLoopbackHost reports whether h is localhost (in any case: host names
// are case-insensitive, RFC 3986 §6.2.2.1) or a loopback address.
func IsLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackURL reports whether s is a URL whose host is loopback.
func IsLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && IsLoopbackHost(u.Hostname())
}
