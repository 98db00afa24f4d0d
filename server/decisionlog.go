package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
)

// decisionLog writes one JSON line per policy decision, allowed or denied:
// who (never the token), what, the answer, why, and which policy revision
// gave it. It answers "who was denied what, and why". Lines are built by
// hand and written in batches: every request pays for its line, and slog's
// JSON handler costs about 3 µs more a line (docs/performance.md, "Tricks
// that did not pay"). FuzzAppendString holds the strings to what
// encoding/json writes.
type decisionLog struct {
	w       io.Writer
	args    string          // full | hash | none
	redact  map[string]bool // argument names whose values are hidden
	closer  io.Closer
	failed  func(lines int)
	log     *slog.Logger // where its own failures are told
	lastErr atomic.Pointer[error]
	replica string // the replica's id, on every line ("" for none)

	// Lines wait in buf at most flushEvery, so that a busy gate makes one
	// write a batch instead of one a request; flushEvery 0 writes each line
	// at once. A flush swaps buf for spare and writes outside mu, so
	// requests never wait for the disk; writing serialises the flushes.
	mu         sync.Mutex
	buf        []byte
	pending    int // lines in buf
	writing    sync.Mutex
	spare      []byte // guarded by writing
	flushEvery time.Duration
	stop       chan struct{}
	stopped    chan struct{}
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
	l.mu.Lock()
	batch, lines := l.buf, l.pending
	l.buf, l.pending = l.spare[:0], 0
	l.mu.Unlock()
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
	Server         string   // tools/call: the tool's server ("builtin" or an upstream), "" when not in the catalog
	Prompt, URI    string   // a prompt or resource action: what it names
	Arguments      []byte   // tools/call: params.arguments as sent
	Visible        []string // tools/list: what was returned
	Hidden         []string // tools/list in dry-run: what would have been hidden
	Result         string
	Code           outcome.Code // the reason code, beside the policy's text
	Reason         string
	RequiredScopes []string
	LimitKey       string        // rate_limited: the key of the limit without room
	RetryAfter     time.Duration // rate_limited: when it has room
	Revision       string
	At             time.Time // when the decision was made
	Eval           time.Duration
	Err            error
}

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (l *decisionLog) write(e entry) {
	bp := linePool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = e.At.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"decision","decision_id":`...)
	b = appendString(b, e.ID)
	if l.replica != "" {
		b = append(b, `,"replica":`...)
		b = appendString(b, l.replica)
	}
	p := e.Principal
	b = append(b, `,"principal":{"sub":`...)
	b = appendString(b, p.Sub)
	b = append(b, `,"iss":`...)
	b = appendString(b, p.Iss)
	b = append(b, `,"provider":`...)
	b = appendString(b, p.Provider)
	b = append(b, `,"org_id":`...)
	b = appendString(b, p.OrgID)
	b = append(b, `,"client_id":`...)
	b = appendString(b, p.ClientID)
	b = append(b, `},"action":`...)
	b = appendString(b, e.Action)
	if e.Tool != "" {
		b = append(b, `,"tool":`...)
		b = appendString(b, e.Tool)
	}
	if e.Server != "" {
		b = append(b, `,"server":`...)
		b = appendString(b, e.Server)
	}
	if e.Prompt != "" {
		b = append(b, `,"prompt":`...)
		b = appendString(b, e.Prompt)
	}
	if e.URI != "" {
		b = append(b, `,"resource":`...)
		b = appendString(b, e.URI)
	}
	if e.Action == "tools/call" || e.Action == "prompts/get" {
		b = l.appendArguments(b, e.Arguments)
	}
	if e.Visible != nil && e.Action == "prompts/list" {
		b = append(b, `,"visible_prompts":`...)
		b = appendStrings(b, e.Visible)
	} else if e.Visible != nil {
		b = append(b, `,"visible_tools":`...)
		b = appendStrings(b, e.Visible)
	}
	if len(e.Hidden) > 0 {
		b = append(b, `,"would_hide":`...)
		b = appendStrings(b, e.Hidden)
	}
	b = append(b, `,"result":`...)
	b = appendString(b, e.Result)
	b = append(b, `,"reason_code":`...)
	b = appendString(b, string(e.Code))
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, e.Reason)
	}
	if len(e.RequiredScopes) > 0 {
		b = append(b, `,"required_scopes":`...)
		b = appendStrings(b, e.RequiredScopes)
	}
	if e.LimitKey != "" {
		b = append(b, `,"limit_key":`...)
		b = appendString(b, e.LimitKey)
		b = append(b, `,"retry_after_ms":`...)
		b = appendMillis(b, e.RetryAfter)
	}
	if e.Err != nil {
		b = append(b, `,"error":`...)
		b = appendString(b, e.Err.Error())
	}
	b = append(b, `,"policy_revision":`...)
	b = appendString(b, e.Revision)
	b = append(b, `,"eval_ms":`...)
	b = appendMillis(b, e.Eval)
	b = append(b, "}\n"...)

	l.mu.Lock()
	l.buf = append(l.buf, b...)
	l.pending++
	full := l.flushEvery == 0 || len(l.buf) >= batchBytes
	l.mu.Unlock()
	*bp = b
	linePool.Put(bp)
	if full {
		l.flush()
	}
}

// appendMillis appends d (not negative) in milliseconds to the
// microsecond, as the shortest decimal: 1.5, 0.012, 3.
func appendMillis(b []byte, d time.Duration) []byte {
	us := max(d.Microseconds(), 0)
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	if frac == 0 {
		return b
	}
	digits := []byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	for digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	return append(b, digits...)
}

// appendArguments logs the arguments as configured: as sent (compacted to
// one line), with named ones redacted, as a SHA-256 of what was sent, or not
// at all. Arguments that are not JSON in UTF-8 are logged as a string.
func (l *decisionLog) appendArguments(b, raw []byte) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	switch l.args {
	case "none":
		return b
	case "hash":
		sum := sha256.Sum256(raw)
		b = append(b, `,"arguments_sha256":"`...)
		b = hex.AppendEncode(b, sum[:])
		return append(b, '"')
	}
	b = append(b, `,"arguments":`...)
	if len(l.redact) > 0 {
		var args map[string]json.RawMessage
		if json.Unmarshal(raw, &args) != nil {
			// Which of its values to hide cannot be known: none is shown.
			return append(b, `"[redacted]"`...)
		}
		for k := range args {
			if l.redact[k] {
				args[k] = json.RawMessage(`"[redacted]"`)
			}
		}
		raw, _ = json.Marshal(args)
	}
	// JSON (RFC 8259 §8.1) is UTF-8, which encoding/json does not check:
	// anything else is logged as a string, so that the line stays JSON.
	if !utf8.Valid(raw) {
		return appendString(b, string(raw))
	}
	out := bytes.NewBuffer(b)
	if json.Compact(out, raw) != nil { // it wrote nothing
		return appendString(b, string(raw)) // not JSON: logged as a string
	}
	return out.Bytes()
}

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

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string (RFC 8259 §7): quotes, backslashes
// and control characters escaped, each invalid UTF-8 byte replaced by
// U+FFFD (as encoding/json does). Runs that need no escape are copied whole.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); {
		if i += plainRun(s[i:]); i == len(s) {
			break
		}
		c := s[i]
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size > 1 {
				i += size
				continue
			}
		}
		b = append(b, s[done:i]...)
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, `\ufffd`...)
		}
		i++
		done = i
	}
	b = append(b, s[done:]...)
	return append(b, '"')
}

// plainRun is the length of the run of plain ASCII bytes s starts with.
func plainRun[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		if !plainASCII[s[i]] {
			return i
		}
	}
	return len(s)
}

// plainASCII holds the bytes a JSON string carries as they are: ASCII, not
// a control character, a quote or a backslash.
var plainASCII = func() (plain [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		plain[c] = c != '"' && c != '\\'
	}
	return plain
}()
