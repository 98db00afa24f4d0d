package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/internal/wire"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/server"
	"github.com/toolgate/toolgate/tools"
)

// policyTest runs the Rego tests like `opa test`.
func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "verbose: print every test")
	coverage := fs.Bool("coverage", false, "report coverage (JSON) instead of the results")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	return policy.RunTests(ctx, dirArg(fs), stdout, policy.TestOptions{Verbose: *verbose, Coverage: *coverage})
}

// policyCheck compiles a policy the way the server does before it swaps
// it in, and prints every finding as file:line: severity: message.
func policyCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file: its builtin_tools and upstreams make the catalog, and data.server_rules must name its upstreams")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	dir := dirArg(fs)
	catalog, upstreams := server.Catalog(tools.Builtin()), []string(nil)
	if *configPath != "" {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return fmt.Errorf("%s:\n%w", *configPath, err)
		}
		if fs.NArg() == 0 && cfg.Policy.Dir != "" {
			dir = cfg.Policy.Dir
		}
		catalog = server.Catalog(wire.Tools(cfg))
		upstreams = []string{}
		for _, u := range cfg.Upstreams {
			upstreams = append(upstreams, u.Name)
		}
	}
	findings, err := policy.Check(policy.Source{Dir: dir}, catalog, upstreams)
	if err != nil {
		return err
	}
	for _, f := range findings {
		fmt.Fprintln(stdout, f)
	}
	if n := len(findings.Errors()); n > 0 {
		return fmt.Errorf("%s: %d error(s)", dir, n)
	}
	fmt.Fprintf(stdout, "%s: ok (%d warning(s))\n", dir, len(findings))
	return nil
}

// policyExplain shows how the policy sees a principal: the principal, the
// tools it may see and, for a tool, the decision of a call.
func policyExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	token := fs.String("token", "", "an access token, validated exactly as the server does")
	claimsFile := fs.String("claims", "", "a JSON file of token claims, taken as valid")
	provider := fs.String("provider", "oidc", "with --claims: the claim-normalisation preset (auth0, workos, stytch, oidc)")
	tool := fs.String("tool", "", "a tool to decide a call of")
	argsJSON := fs.String("args", "{}", "with --tool: the call's arguments (a JSON object)")
	trace := fs.Bool("trace", false, "print OPA's evaluation trace")
	configPath := fs.String("config", "", "configuration file: its issuers, policy.dir, builtin_tools and upstreams (default: the development default)")
	dir := fs.String("dir", "", "policy directory (default: the config's policy.dir, or rego/)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*token == "") == (*claimsFile == "") {
		return errors.New("policy explain: give exactly one of --token and --claims")
	}
	var arguments map[string]any
	if err := json.Unmarshal([]byte(*argsJSON), &arguments); err != nil {
		return fmt.Errorf("policy explain: --args is not a JSON object: %w", err)
	}

	cfg, src, err := explainSetup(*configPath, *dir)
	if err != nil {
		return err
	}
	var p *idp.Principal
	if *token != "" {
		if p, err = verifyForExplain(ctx, cfg, src, *token); err != nil {
			return err
		}
	} else {
		if !slices.Contains(idp.Providers, *provider) {
			return fmt.Errorf("policy explain: --provider %q is not one of %v", *provider, idp.Providers)
		}
		b, err := os.ReadFile(*claimsFile)
		if err != nil {
			return err
		}
		var claims map[string]any
		if err := json.Unmarshal(b, &claims); err != nil {
			return fmt.Errorf("%s: not a JSON object: %w", *claimsFile, err)
		}
		p = idp.Normalise(*provider, "explain", claims)
	}

	engine, servers, err := explainEngine(ctx, cfg, src, stderr)
	if err != nil {
		return err
	}
	visible, err := engine.Visible(ctx, p)
	out := explanation{Principal: p, VisibleTools: []string{}, Policy: src.Policy.String(), Revision: engine.Revision()}
	if err != nil {
		out.VisibleError = err.Error()
	}
	for n := range visible {
		out.VisibleTools = append(out.VisibleTools, n)
	}
	slices.Sort(out.VisibleTools)
	if *tool != "" {
		d := engine.Decide(ctx, p, *tool, arguments)
		code := server.DecisionCode(d)
		out.Decision = &explainedDecision{Tool: *tool, Server: servers[*tool], Arguments: arguments, Visible: d.Visible, Allowed: d.Allowed,
			Code: code, Answer: outcome.Of(code).Answer, Reason: d.Reason, RequiredScopes: append([]string{}, d.RequiredScopes...)}
		if d.Err != nil {
			out.Decision.Error = d.Err.Error()
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if *trace {
		fmt.Fprintln(stdout, "\ntrace:")
		return engine.Trace(ctx, p, *tool, arguments, stdout)
	}
	return nil
}

// explanation is what `policy explain` prints, in reading order.
type explanation struct {
	Principal    *idp.Principal     `json:"principal"`
	VisibleTools []string           `json:"visible_tools"`
	VisibleError string             `json:"visible_tools_error,omitempty"`
	Decision     *explainedDecision `json:"decision,omitempty"`
	Policy       string             `json:"policy"`
	Revision     string             `json:"policy_revision"`
}

type explainedDecision struct {
	Tool           string         `json:"tool"`
	Server         string         `json:"server,omitempty"` // policy input tools[_].server; none for a tool not in the catalog
	Arguments      map[string]any `json:"arguments"`
	Code           outcome.Code   `json:"reason_code"`
	Answer         string         `json:"answer"`
	Visible        bool           `json:"visible"`
	Allowed        bool           `json:"allowed"`
	Reason         string         `json:"reason,omitempty"`
	RequiredScopes []string       `json:"required_scopes"`
	Error          string         `json:"error,omitempty"`
}

// explainEngine builds the policy engine over the catalog the server would
// serve: the built-in tools (unless builtin_tools is false) and the tools of
// each configured upstream that is up, listed once as `toolgate upstream
// list` does. An upstream that is down is named on stderr and its tools are
// absent, as they are from a running server's catalog until it comes up.
// servers maps each tool of the catalog to its server.
func explainEngine(ctx context.Context, cfg *config.Config, src wire.Sources, stderr io.Writer) (*policy.Engine, map[string]string, error) {
	builtin := wire.Tools(cfg)
	engine, _, err := wire.Policy(ctx, cfg, src.Policy, builtin, policy.Options{
		Logger:         slog.New(slog.DiscardHandler),
		DynamicCatalog: len(cfg.Upstreams) > 0, // as serve: a rule may name a tool of an upstream that is down
	})
	if err != nil {
		return nil, nil, err
	}
	catalog := server.Catalog(builtin)
	if len(cfg.Upstreams) > 0 {
		// Not logged: the one line below says why an upstream is down, and
		// `toolgate upstream list` warns of the tools toolgate drops.
		pool, stop, err := listUpstreams(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, nil, err
		}
		ups, status := pool.Tools(), pool.Status()
		stop()
		for _, st := range status {
			if !st.Up {
				fmt.Fprintf(stderr, "policy explain: upstream %q is down, its tools are absent: %s\n", st.Name, st.Error)
			}
		}
		catalog = append(catalog, server.UpstreamCatalog(ups)...)
		if err := engine.SetCatalog(catalog); err != nil {
			return nil, nil, err
		}
	}
	servers := make(map[string]string, len(catalog))
	for _, t := range catalog {
		servers[t.Name] = t.Server
	}
	return engine, servers, nil
}

// explainSetup finds the issuers and the policy an explanation uses: those
// of --config, else the development default's; --dir, else the policy
// directory (or embedded default policy) they name.
func explainSetup(configPath, dir string) (*config.Config, wire.Sources, error) {
	var cfg *config.Config
	var src wire.Sources
	if configPath != "" {
		c, err := config.Load(configPath)
		if err != nil {
			return nil, src, fmt.Errorf("%s:\n%w", configPath, err)
		}
		cfg = c
	} else {
		var err error
		if cfg, src, err = devDefault(devListen); err != nil {
			return nil, src, err
		}
	}
	switch {
	case dir != "":
		src.Policy = &policy.Source{Dir: dir}
	case src.Policy == nil:
		s := wire.PolicySource(cfg)
		src.Policy = &s
	}
	return cfg, src, nil
}

// verifyForExplain validates a token exactly as the server does, keys
// fetched from the issuers, and says which check fails.
func verifyForExplain(ctx context.Context, cfg *config.Config, src wire.Sources, token string) (*idp.Principal, error) {
	v, err := wire.Verifier(cfg, src, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return nil, err
	}
	v.Start(ctx)
	defer v.Close()
	deadline := time.Now().Add(2*cfg.Tokens.JWKSTimeout + time.Second)
	for len(v.Pending()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	p, err := v.Verify(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("the server would answer 401: token refused: %s (%v)", idp.ReasonOf(err), err)
	}
	return p, nil
}

// parseInterspersed parses flags that may follow the positional argument
// (`policy test rego/ -v`), as opa's own command line allows.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(positional)
}

func dirArg(fs *flag.FlagSet) string {
	if fs.NArg() > 0 {
		return fs.Arg(0)
	}
	return devPolicy
}
