// Command toolgate is a policy gate for MCP tools: see README.md. This file
// only parses the command line; internal/wire builds the parts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/internal/wire"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/rego"
	"github.com/toolgate/toolgate/server"
)

// The development default of `toolgate serve` without --config.
const (
	devListen = "127.0.0.1:8080"
	devPolicy = "rego" // used when present, else the embedded copy
)

const usage = `usage:
  toolgate serve [--config FILE]
  toolgate token [--sub S] [--permissions p1,p2] [--scope "a b"] [--roles r1,r2] [--ttl 1h]
  toolgate policy test [-v] [--coverage] [DIR]
  toolgate policy check [--config FILE] [DIR]
  toolgate policy explain (--token TOKEN | --claims FILE) [--provider P] [--tool NAME] [--args JSON]
                          [--trace] [--config FILE] [--dir DIR]
  toolgate upstream list [--config FILE]
  toolgate upstream lock --config FILE
  toolgate upstream diff --config FILE
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the exit status; errors go to stderr
// as one line each.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) >= 1 && args[0] == "serve":
		err = serve(ctx, args[1:], stderr, nil)
	case len(args) >= 1 && args[0] == "token":
		err = token(args[1:], stdout, stderr)
	case len(args) >= 2 && args[0] == "policy" && args[1] == "test":
		err = policyTest(ctx, args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "policy" && args[1] == "check":
		err = policyCheck(args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "policy" && args[1] == "explain":
		err = policyExplain(ctx, args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "upstream" && args[1] == "list":
		err = upstreamList(ctx, args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "upstream" && args[1] == "lock":
		err = upstreamLock(ctx, args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "upstream" && args[1] == "diff":
		err = upstreamDiff(ctx, args[2:], stdout, stderr)
	case len(args) >= 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "toolgate:", strings.ReplaceAll(err.Error(), "\n", "\ntoolgate: "))
		}
		return 1
	}
	return 0
}

// serve runs the service until ctx ends. ready, when not nil, receives the
// listening address (for tests).
func serve(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML); without it, the development default")
	listen := fs.String("listen", "", "override the listen address (development default only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	opts := server.Options{Logger: log}
	var src wire.Sources
	var ln net.Listener
	if *configPath != "" {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return fmt.Errorf("%s:\n%w", *configPath, err)
		}
		opts.Config = cfg
	} else {
		addr := devListen
		if *listen != "" {
			addr = *listen
		}
		// Listen first, so that a port chosen by the system (":0") is the
		// one the development issuer and public URL name.
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		defer ln.Close()
		if opts.Config, src, err = devDefault(ln.Addr().String()); err != nil {
			return err
		}
		log.Warn("no --config: development default with a built-in issuer; get a token with `toolgate token`",
			"listen", opts.Config.Listen, "policy", src.Policy.String())
	}
	srv, err := wire.Server(ctx, opts, src)
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", opts.Config.Listen); err != nil {
			return err
		}
	}
	log.Info("toolgate listening", "address", ln.Addr().String(), "resource", opts.Config.ResourceURL(), "policy_revision", srv.Policy().Revision())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = srv.Serve(ctx, ln, 10*time.Second)
	log.Info("toolgate stopped")
	return err
}

// devDefault is the configuration of `toolgate serve` without --config
// (docs/configuration.md, "The development default"): loopback only, the development
// issuer, and rego/ when run from the repository.
func devDefault(listen string) (*config.Config, wire.Sources, error) {
	cfg := config.Default()
	cfg.Listen = listen
	cfg.Anonymous = true // only to pass validation without a configured issuer
	if err := cfg.Validate(); err != nil {
		return nil, wire.Sources{}, err
	}
	cfg.Anonymous = false
	if !config.IsLoopbackURL(cfg.PublicURL) {
		return nil, wire.Sources{}, fmt.Errorf("the development default listens on loopback only, not %s", listen)
	}
	dev, err := devIssuer(cfg.PublicURL)
	if err != nil {
		return nil, wire.Sources{}, err
	}
	is, err := dev.Issuer()
	if err != nil {
		return nil, wire.Sources{}, err
	}
	src := policy.Source{Dir: devPolicy}
	if st, err := os.Stat(devPolicy); err != nil || !st.IsDir() {
		src = policy.Source{FS: rego.FS}
	}
	return cfg, wire.Sources{Issuers: []idp.Issuer{is}, Policy: &src}, nil
}

func devIssuer(publicURL string) (*idp.DevIssuer, error) {
	path, err := idp.DevKeyPath()
	if err != nil {
		return nil, err
	}
	return idp.LoadDevIssuer(path, publicURL+"/dev", publicURL+"/mcp")
}

// token prints a development token for `toolgate serve` without --config.
func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "dev-user", "subject")
	perms := fs.String("permissions", "", "comma-separated permissions")
	scope := fs.String("scope", "", "space-separated scopes")
	roles := fs.String("roles", "", "comma-separated roles")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	url := fs.String("url", "http://"+devListen, "public URL of the development server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q", fs.Arg(0))
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	dev, err := devIssuer(strings.TrimSuffix(*url, "/"))
	if err != nil {
		return err
	}
	t, err := dev.Mint(idp.DevClaims{Sub: *sub, Permissions: splitList(*perms, ","), Scope: *scope, Roles: splitList(*roles, ","), TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}

func splitList(s, sep string) []string {
	out := []string{}
	for _, x := range strings.Split(s, sep) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
