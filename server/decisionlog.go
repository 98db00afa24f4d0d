package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
)

// decisionLog writes one JSON line per policy decision, allowed or denied:
// who (never the token), what, the answer, why, and which policy revision
// gave it. It answers "who was denied what, and why". Each line is a record
// of slog's JSON handler, so that strings and the client's arguments are
// escaped and checked by the standard library, not by hand.
type decisionLog struct {
	h       *slog.JSONHandler // writes each line, whole, into queue
	queue   queue
	w       io.Writer
	args    string          // full | hash | none
	redact  map[string]bool // argument names whose values are hidden
	closer  io.Closer
	failed  func(lines int)
	log     *slog.Logger // where its own failures are told
	lastErr atomic.Pointer[error]

	// Lines wait in queue at most flushEvery, so that a busy gate makes one
	// write a batch instead of one a request; flushEvery 0 writes each line
	// at once. A flush swaps the queue's buffer for spare and writes outside
	// the queue's lock, so requests never wait for the disk; writing
	// serialises the flushes.
	writing    sync.Mutex
	spare      []byte // guarded by writing
	flushEvery time.Duration
	stop       chan struct{}
	stopped    chan struct{}
}

// queue holds the lines not yet written. The handler calls Write once per
// record, with the whole line.
type queue struct {
	mu    sync.Mutex
	buf   []byte
	lines int
}

func (q *queue) Write(line []byte) (int, error) {
	q.mu.Lock()
	q.buf = append(q.buf, line...)
	q.lines++
	q.mu.Unlock()
	return len(line), nil
}

// size is how many bytes wait.
func (q *queue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}

// take returns the waiting lines and how many they are, and keeps spare
// (emptied) for the next ones.
func (q *queue) take(spare []byte) ([]byte, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch, lines := q.buf, q.lines
	q.buf, q.lines = spare[:0], 0
	return batch, lines
}

// openDecisionLog opens the configured output: stderr, stdout or a file
// (appended, created 0600).
func openDecisionLog(c config.DecisionLog, log *slog.Logger, failed func(int)) (*decisionLog, error) {
	var w io.Writer
	var closer io.Closer
	switch c.Output {
	case "", "stderr":
		w = os.Stderr
	case "stdout":
		w = os.Stdout
	default:
		f, err := os.OpenFile(c.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("decision_log.output: %w", err)
		}
		w, closer = f, f
	}
	return newDecisionLog(w, c, closer, log, failed), nil
}

func newDecisionLog(w io.Writer, c config.DecisionLog, closer io.Closer, log *slog.Logger, failed func(int)) *decisionLog {
	if failed == nil {
		failed = func(int) {}
	}
	l := &decisionLog{w: w, args: c.Arguments, redact: set(c.Redact), closer: closer, failed: failed, log: log,
		flushEvery: c.FlushInterval, stop: make(chan struct{}), stopped: make(chan struct{})}
	l.h = slog.NewJSONHandler(&l.queue, nil)
	if l.flushEvery > 0 {
		go l.flusher()
	} else {
		close(l.stopped)
	}
	return l
}

func (l *decisionLog) flusher() {
	defer close(l.stopped)
	t := time.NewTicker(l.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.flush()
			return
		case <-t.C:
			l.flush()
		}
	}
}

// batchBytes is the most a batch holds before it is written without waiting
// for the next tick.
const batchBytes = 64 << 10

// flush writes the waiting lines.
func (l *decisionLog) flush() {
	l.writing.Lock()
	defer l.writing.Unlock()
	batch, lines := l.queue.take(l.spare)
	l.spare = batch
	if lines == 0 {
		return
	}
	_, err := l.w.Write(batch)
	if err != nil {
		if l.lastErr.Swap(&err) == nil {
			l.log.Error("decision log write failed; decisions are still enforced", "error", err)
		}
		l.failed(lines)
		return
	}
	if l.lastErr.Swap(nil) != nil {
		l.log.Info("decision log writes again")
	}
}

// entry is one decision as logged.
type entry struct {
	ID             string
	Principal      *idp.Principal
	Action, Tool   string
	Arguments      []byte   // tools/call: params.arguments as sent
	Visible        []string // tools/list: what was returned
	Hidden         []string // tools/list in dry-run: what would have been hidden
	Result         string
	Code           outcome.Code // the reason code, beside the policy's text
	Reason         string
	RequiredScopes []string
	Revision       string
	At             time.Time // when the decision was made
	Eval           time.Duration
	Err            error
}

// write queues e's line, and writes the queue when it is due.
func (l *decisionLog) write(e entry) {
	p := e.Principal
	attrs := make([]slog.Attr, 0, 16) // every field of a line: on the stack
	attrs = append(attrs,
		slog.String("decision_id", e.ID),
		slog.GroupAttrs("principal", slog.String("sub", p.Sub), slog.String("iss", p.Iss),
			slog.String("provider", p.Provider), slog.String("org_id", p.OrgID), slog.String("client_id", p.ClientID)),
		slog.String("action", e.Action))
	if e.Tool != "" {
		attrs = append(attrs, slog.String("tool", e.Tool))
	}
	if e.Action == policy.ActionCall && l.args != "none" {
		attrs = append(attrs, l.arguments(e.Arguments))
	}
	if e.Visible != nil {
		attrs = append(attrs, slog.Any("visible_tools", e.Visible))
	}
	if len(e.Hidden) > 0 {
		attrs = append(attrs, slog.Any("would_hide", e.Hidden))
	}
	attrs = append(attrs, slog.String("result", e.Result), slog.String("reason_code", string(e.Code)))
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	if len(e.RequiredScopes) > 0 {
		attrs = append(attrs, slog.Any("required_scopes", e.RequiredScopes))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	attrs = append(attrs, slog.String("policy_revision", e.Revision), slog.Float64("eval_ms", millis(e.Eval)))
	r := slog.NewRecord(e.At.UTC(), slog.LevelInfo, "decision", 0)
	r.AddAttrs(attrs...)
	l.h.Handle(context.Background(), r) // only the queue's Write could fail, and it does not

	// Not in the queue's Write: the handler holds its lock around it, and a
	// flush there would make every request wait for the disk.
	if l.flushEvery == 0 || l.queue.size() >= batchBytes {
		l.flush()
	}
}

// millis is d (not negative) in milliseconds to the microsecond, which
// encoding/json writes as the shortest decimal: 1.5, 0.012, 3.
func millis(d time.Duration) float64 {
	return float64(max(d.Microseconds(), 0)) / 1000
}

// arguments is the arguments as configured: as sent (on one line), with
// named ones redacted, or as a SHA-256 of what was sent. What is not JSON
// (a call refused for its arguments), or not UTF-8 (which encoding/json
// passes through, and RFC 8259 §8.1 forbids), is logged as a string, or,
// when names are to be redacted, not at all: which of its values to hide
// cannot be told.
func (l *decisionLog) arguments(raw []byte) slog.Attr {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if l.args == "hash" {
		sum := sha256.Sum256(raw)
		return slog.String("arguments_sha256", hex.EncodeToString(sum[:]))
	}
	valid := utf8.Valid(raw) && json.Valid(raw)
	switch {
	case !valid && len(l.redact) > 0:
		return slog.String("arguments", redacted)
	case !valid:
		return slog.String("arguments", string(raw))
	case len(l.redact) > 0:
		var args map[string]json.RawMessage
		if json.Unmarshal(raw, &args) == nil { // else not an object: nothing is named
			for k := range args {
				if l.redact[k] {
					args[k] = json.RawMessage(`"` + redacted + `"`)
				}
			}
			return slog.Any("arguments", args)
		}
	}
	return slog.Any("arguments", json.RawMessage(raw))
}

// redacted stands for a value the configuration hides.
const redacted = "[redacted]"

// Err is why the latest line could not be written, or nil.
func (l *decisionLog) Err() error {
	if p := l.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Close writes the waiting lines and closes the output.
func (l *decisionLog) Close() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.stopped
	l.flush()
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}
