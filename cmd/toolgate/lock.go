package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/upstream"
)

// upstreamLock writes the lock file (lock_file) with the digest and the
// definition of every tool the configured upstreams list now
// (docs/configuration.md, "Pinning upstream tools"). It connects as
// `upstream list` does, and writes nothing when an upstream is down:
// a lock must hold what was seen, all of it.
func upstreamLock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, snap, err := snapshot(ctx, "upstream lock", args, stderr)
	if err != nil {
		return err
	}
	old, err := readLock(cfg.LockFile)
	if err != nil {
		old = nil // replaced whole: an unreadable lock is what lock repairs
	}
	if err := snap.Write(cfg.LockFile); err != nil {
		return fmt.Errorf("upstream lock: %w", err)
	}
	n := 0
	for _, tools := range snap.Upstreams {
		n += len(tools)
	}
	fmt.Fprintf(stdout, "%s: %d tools of %d upstreams locked", cfg.LockFile, n, len(snap.Upstreams))
	if _, changed := upstream.Diff(old, snap); changed == 0 {
		fmt.Fprintln(stdout, ", unchanged")
	} else {
		fmt.Fprintf(stdout, ", %d changed, new or removed\n", changed)
	}
	return nil
}

// upstreamDiff shows what `upstream lock` would change in the lock file: a
// unified diff of each tool's human-readable definition, changed, new or
// removed. It fails when anything differs (or an upstream is down), so that
// a deployment can check the lock with it.
func upstreamDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, snap, err := snapshot(ctx, "upstream diff", args, stderr)
	if err != nil {
		return err
	}
	old, err := readLock(cfg.LockFile)
	if err != nil {
		return fmt.Errorf("upstream diff: %w", err)
	}
	d, n := upstream.Diff(old, snap)
	if n == 0 {
		return nil
	}
	fmt.Fprint(stdout, d)
	return fmt.Errorf("upstream diff: %d tools differ from the lock file %s; review the diff, then accept it with `toolgate upstream lock`", n, cfg.LockFile)
}

// snapshot reads --config and lists every configured upstream once, with
// pinning off (what is withheld is what is to be locked).
func snapshot(ctx context.Context, cmd string, args []string, stderr io.Writer) (*config.Config, *upstream.Lock, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML); its lock_file is written or compared")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: unexpected argument %q", cmd, fs.Arg(0))
	}
	if *configPath == "" {
		return nil, nil, fmt.Errorf("%s: --config is needed: the development default has no upstreams", cmd)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%s:\n%w", *configPath, err)
	}
	if len(cfg.Upstreams) == 0 {
		return nil, nil, fmt.Errorf("%s: no upstream is configured", cmd)
	}
	listed := *cfg
	listed.LockFile = ""
	listed.Upstreams = append([]config.Upstream(nil), cfg.Upstreams...)
	for i := range listed.Upstreams {
		listed.Upstreams[i].Pin = false
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, stop, err := listUpstreams(ctx, &listed, log)
	if err != nil {
		return nil, nil, err
	}
	defer stop()
	snap, err := pool.Snapshot()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w; nothing compared or written", cmd, err)
	}
	return cfg, snap, nil
}

// readLock reads the lock file; one that does not exist is empty.
func readLock(path string) (*upstream.Lock, error) {
	l, err := upstream.ReadLock(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &upstream.Lock{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	return l, nil
}
