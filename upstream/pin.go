package upstream

// Pinning upstream tools (issue 16; docs/configuration.md, "Pinning
// upstream tools"): an upstream can change a tool's description or schema
// after it was reviewed ("tool poisoning"). `toolgate upstream lock` writes
// the digest of each tool's definition to the lock file, which is reviewed
// and committed; an upstream with pin: true serves only the tools whose
// digest is the lock's.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aymanbagabas/go-udiff"
	"github.com/fsnotify/fsnotify"
	"github.com/gowebpki/jcs"

	"github.com/toolgate/toolgate/config"
)

// Hashed are the members of a tool's definition (MCP server/tools, "Tool")
// that its digest covers: what a client, and the model behind it, reads
// of the tool. _meta, icons and the like are not: they carry no
// instructions to the model.
var Hashed = []string{"name", "title", "description", "inputSchema", "outputSchema", "annotations"}

// Pin is what pinning knows of one upstream tool.
type Pin struct {
	// Digest is "sha256:" and the hex SHA-256 of Definition.
	Digest string
	// Pinned is true when the lock file has Digest for this tool.
	Pinned bool
	// Definition is the tool's Hashed members as the upstream listed them
	// (a null one left out), in the canonical JSON form of RFC 8785 (JCS):
	// the order of an object's members and the spelling of a number or a
	// string do not change it.
	Definition json.RawMessage
	// name is the tool's name as the upstream lists it (the lock's key).
	name string
}

// Definition is the canonical form of a tool's definition as an upstream
// listed it, and its digest (see Pin).
func Definition(tool json.RawMessage) (canonical json.RawMessage, digest string, err error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(tool, &all); err != nil {
		return nil, "", err
	}
	kept := map[string]json.RawMessage{}
	for _, k := range Hashed {
		if v, ok := all[k]; ok && string(bytes.TrimSpace(v)) != "null" {
			kept[k] = v
		}
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, "", err
	}
	// JCS also refuses what two parsers could read apart: a member
	// named twice, a lone surrogate.
	if canonical, err = jcs.Transform(b); err != nil {
		return nil, "", err
	}
	return canonical, digestOf(canonical), nil
}

func digestOf(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// LockVersion is the format of the lock files this toolgate writes and reads.
const LockVersion = 1

// Lock is the lock file: per upstream, per tool (by the name the upstream
// lists it under, without the prefix), its digest and definition.
type Lock struct {
	Upstreams map[string]map[string]Locked
}

// Locked is one tool in the lock file.
type Locked struct {
	Digest     string          `json:"digest"`
	Definition json.RawMessage `json:"definition"`
}

type lockFile struct {
	Comment   string                       `json:"comment"`
	Version   int                          `json:"version"`
	Upstreams map[string]map[string]Locked `json:"upstreams"`
}

const lockComment = "Written by `toolgate upstream lock`: review its changes, do not edit it. docs/configuration.md, \"Pinning upstream tools\"."

// ReadLock reads the lock file at path. A tool whose digest is not its
// definition's (an edit by hand) makes the file invalid: what a reviewer
// reads must be what is enforced.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseLock(b)
}

func parseLock(b []byte) (*Lock, error) {
	var f lockFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if f.Version != LockVersion {
		return nil, fmt.Errorf("version %d: this toolgate reads version %d", f.Version, LockVersion)
	}
	var errs []error
	for up, tools := range f.Upstreams {
		for name, t := range tools {
			c, err := jcs.Transform(t.Definition)
			if err == nil && digestOf(c) != t.Digest {
				err = errors.New("the digest is not its definition's (edited by hand?); write the file again with `toolgate upstream lock`")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("upstreams.%s.%s: %w", up, name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if f.Upstreams == nil {
		f.Upstreams = map[string]map[string]Locked{}
	}
	return &Lock{Upstreams: f.Upstreams}, nil
}

// Marshal is the lock file: indented JSON, members sorted, one line per
// member of a definition, so that a change reviews as a small diff.
func (l *Lock) Marshal() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(lockFile{Comment: lockComment, Version: LockVersion, Upstreams: l.Upstreams}); err != nil {
		panic(err) // a Lock holds only valid JSON
	}
	return b.Bytes()
}

// Write writes the lock file at path, replacing it whole (a rename), so
// that a running toolgate never reads half of it.
func (l *Lock) Write(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".toolgate.lock-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(l.Marshal()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// digest is the locked digest of an upstream's tool, "" when none.
func (l *Lock) digest(upstream, tool string) string {
	if l == nil {
		return ""
	}
	return l.Upstreams[upstream][tool].Digest
}

// Readable is the human-readable form of a definition: its canonical JSON
// indented, a member per line, as the lock file holds it.
func Readable(definition json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, definition, "", "  "); err != nil {
		return string(definition)
	}
	b.WriteByte('\n')
	return b.String()
}

// Diff is what `toolgate upstream lock` would change in old to make it cur:
// a unified diff of the human-readable form of each tool changed, added or
// removed (old's upstreams that cur lacks are removed whole), sorted by
// upstream and tool, each after a line that says what changed; and how
// many tools differ.
func Diff(old, cur *Lock) (diff string, tools int) {
	if old == nil {
		old = &Lock{}
	}
	ups := map[string]bool{}
	for up := range old.Upstreams {
		ups[up] = true
	}
	for up := range cur.Upstreams {
		ups[up] = true
	}
	var out bytes.Buffer
	for _, up := range sortedKeys(ups) {
		names := map[string]bool{}
		for n := range old.Upstreams[up] {
			names[n] = true
		}
		for n := range cur.Upstreams[up] {
			names[n] = true
		}
		for _, n := range sortedKeys(names) {
			was, wasOK := old.Upstreams[up][n]
			now, nowOK := cur.Upstreams[up][n]
			if wasOK && nowOK && was.Digest == now.Digest {
				continue
			}
			from, to := "a/"+up+"/"+n, "b/"+up+"/"+n
			var before, after string
			if wasOK {
				before = Readable(was.Definition)
			} else {
				from = "/dev/null"
			}
			if nowOK {
				after = Readable(now.Definition)
			} else {
				to = "/dev/null"
			}
			fmt.Fprintf(&out, "%s %s: %s\n", changeOf(wasOK, nowOK), up, n)
			out.WriteString(udiff.Unified(from, to, before, after))
			tools++
		}
	}
	return out.String(), tools
}

func changeOf(was, now bool) string {
	switch {
	case !was:
		return "new"
	case !now:
		return "removed"
	}
	return "changed"
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Snapshot is the lock of the upstreams' tools as listed now: every tool
// toolgate keeps from each upstream, withheld or not. It fails when an
// upstream is down, rather than lock what it did not see.
func (p *Pool) Snapshot() (*Lock, error) {
	l := &Lock{Upstreams: map[string]map[string]Locked{}}
	var errs []error
	for _, u := range p.ups {
		u.mu.Lock()
		up, err, tools := u.up, u.lastErr, slices.Clone(u.listed)
		u.mu.Unlock()
		if !up {
			errs = append(errs, fmt.Errorf("upstream %s is down: %v", u.cfg.Name, err))
			continue
		}
		m := map[string]Locked{}
		for _, t := range tools {
			m[t.name] = Locked{Digest: t.Digest, Definition: t.Definition}
		}
		l.Upstreams[u.cfg.Name] = m
	}
	return l, errors.Join(errs...)
}

// pins is a pool's lock file, kept current while toolgate runs.
type pins struct {
	path string // "" when there is no lock file to read
	lock atomic.Pointer[Lock]
	last []byte // the file as last read (watch)
	log  *slog.Logger

	mu       sync.Mutex
	reported map[[2]string]string // upstream, tool -> the digest withheld, logged and counted
}

// ErrNoLock is a pinned upstream without a lock file.
var ErrNoLock = errors.New("no lock file")

// newPins reads the lock file of o. Pinning without a lock file is an
// error: nothing could be served, and a pin silently ignored is worse.
func newPins(cfgs []config.Upstream, o Options) (*pins, error) {
	ps := &pins{path: o.LockFile, log: o.Logger, reported: map[[2]string]string{}}
	ps.lock.Store(&Lock{})
	var pinned []string
	for _, c := range cfgs {
		if c.Pin {
			pinned = append(pinned, c.Name)
		}
	}
	if ps.path == "" {
		if len(pinned) > 0 {
			return nil, fmt.Errorf("upstreams %v pin their tools: %w", pinned, ErrNoLock)
		}
		return ps, nil
	}
	b, err := os.ReadFile(ps.path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && len(pinned) == 0:
		return ps, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("upstreams %v pin their tools, and the lock file %s does not exist: %w; write it with `toolgate upstream lock` and review it",
			pinned, ps.path, ErrNoLock)
	case err != nil:
		return nil, fmt.Errorf("lock file: %w", err)
	}
	l, err := parseLock(b)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", ps.path, err)
	}
	ps.lock.Store(l)
	ps.last = b
	return ps, nil
}

// admit sets t's Pinned and says whether u may serve it.
func (ps *pins) admit(u *Upstream, t *Tool) bool {
	t.Pinned = t.Digest != "" && ps.lock.Load().digest(u.cfg.Name, t.name) == t.Digest
	return t.Pinned || !u.cfg.Pin
}

// Withheld names the tools, as a client would see them, that pinned
// upstreams list but do not serve: they differ from the lock, or it lacks
// them. A call of one is decided tool_changed.
func (p *Pool) Withheld() map[string]string {
	out := map[string]string{}
	for u, t := range p.withheld() {
		out[t.Tool.Name] = u.cfg.Name
	}
	return out
}

// withheld yields each tool a pinned upstream lists but does not serve,
// with its upstream.
func (p *Pool) withheld() iter.Seq2[*Upstream, Tool] {
	return func(yield func(*Upstream, Tool) bool) {
		for _, u := range p.ups {
			if !u.cfg.Pin {
				continue
			}
			for _, t := range u.tools() {
				if !p.pins.admit(u, &t) && !yield(u, t) {
					return
				}
			}
		}
	}
}

// checkPins logs and counts each tool newly withheld, once per digest: it
// runs before every OnChange (a listing changed, the lock changed), not per
// request.
func (p *Pool) checkPins() {
	ps := p.pins
	ps.mu.Lock()
	defer ps.mu.Unlock()
	lock := ps.lock.Load()
	now := map[[2]string]string{}
	for u, t := range p.withheld() {
		key := [2]string{u.cfg.Name, t.name}
		now[key] = t.Digest
		if ps.reported[key] == t.Digest {
			continue
		}
		old := lock.digest(u.cfg.Name, t.name)
		if old == "" {
			old = "none"
		}
		u.log.Warn("upstream tool withheld: its definition is not the lock's; review it with `toolgate upstream diff`, accept it with `toolgate upstream lock`",
			"tool", t.Tool.Name, "old_digest", old, "new_digest", t.Digest)
		p.opts.OnToolChange(u.cfg.Name)
	}
	ps.reported = now
}

// LockDebounce is how long the lock file's watcher waits for a burst of
// file events to settle before it reads the file again.
const LockDebounce = 200 * time.Millisecond

// watchLock reads the lock file again whenever its directory changes
// (a rename, as `toolgate upstream lock` writes it, or a symbolic link
// swapped, as a Kubernetes ConfigMap is), until ctx ends. A new lock puts
// the tools it pins back at once (OnChange). A lock that cannot be read
// leaves the last one in force, with an error logged.
func (p *Pool) watchLock(ctx context.Context) {
	ps := p.pins
	if ps.path == "" {
		return
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(filepath.Dir(ps.path))
	}
	if err != nil {
		ps.log.Error("the lock file is not watched: a new one takes a restart", "lock_file", ps.path, "error", err)
		if w != nil {
			w.Close()
		}
		return
	}
	defer w.Close()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Chmod) {
				timer = time.After(LockDebounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			ps.log.Warn("lock file watcher", "error", err)
		case <-timer:
			timer = nil
			if p.reloadLock() {
				p.opts.OnChange()
			}
		}
	}
}

// reloadLock reads the lock file and reports whether it changed.
func (p *Pool) reloadLock() bool {
	ps := p.pins
	b, err := os.ReadFile(ps.path)
	if err == nil && bytes.Equal(b, ps.last) || errors.Is(err, fs.ErrNotExist) && ps.last == nil {
		return false
	}
	var l *Lock
	if err == nil {
		l, err = parseLock(b)
	}
	if err != nil {
		ps.log.Error("lock file not reloaded; the last one read stays in force", "lock_file", ps.path, "error", err)
		return false
	}
	ps.last = b
	ps.lock.Store(l)
	ps.log.Info("lock file reloaded", "lock_file", ps.path)
	return true
}
