package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/internal/wire"
	"github.com/toolgate/toolgate/upstream"
)

// upstreamList prints each configured upstream, whether it is up (or why
// not) and its tools as a client sees them: prefixed, without the names
// toolgate drops, before the policy filters them. It connects to the
// upstreams as `toolgate serve` does (docs/configuration.md, "Checking the
// upstreams"), and serves nothing. It fails when an upstream is down, so
// that a deployment script can check the configuration with it.
func upstreamList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upstream list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML); without it, the development default, which has no upstreams")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("upstream list: unexpected argument %q", fs.Arg(0))
	}
	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return fmt.Errorf("%s:\n%w", *configPath, err)
		}
	}
	if len(cfg.Upstreams) == 0 {
		fmt.Fprintln(stdout, "no upstream is configured")
		return nil
	}
	// Warnings: why an upstream is down, what one lists that toolgate drops.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, stop, err := listUpstreams(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()

	byServer := map[string][]string{}
	for _, t := range pool.Tools() {
		byServer[t.Server] = append(byServer[t.Server], t.Tool.Name)
	}
	down := 0
	for _, st := range pool.Status() {
		if !st.Up {
			down++
			fmt.Fprintf(stdout, "%s: down: %s\n", st.Name, st.Error)
			continue
		}
		names := byServer[st.Name]
		slices.Sort(names)
		fmt.Fprintf(stdout, "%s: up, %d tools\n", st.Name, len(names))
		for _, n := range names {
			fmt.Fprintf(stdout, "  %s\n", n)
		}
	}
	if down > 0 {
		return fmt.Errorf("upstream list: %d of %d upstreams down", down, len(cfg.Upstreams))
	}
	return nil
}

// listUpstreams connects to the configured upstreams as `toolgate serve`
// does, beside the tools it serves (wire.Tools: their names no upstream tool
// may take), and returns once each has been listed once (up or down),
// having logged to log what went wrong. stop closes the connections and
// stops the stdio processes.
func listUpstreams(ctx context.Context, cfg *config.Config, log *slog.Logger) (pool *upstream.Pool, stop func(), err error) {
	if pool, err = wire.Upstreams(cfg, wire.Tools(cfg), log, nil); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	wait, err := pool.Start(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	select {
	case <-pool.Listed():
	case <-ctx.Done():
	}
	return pool, func() { cancel(); wait() }, nil
}
