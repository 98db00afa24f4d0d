package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
)

// decisionLog writes one JSON line per policy decision, allowed or denied:
// who (never the token), what, the answer, why, and which policy revision
// gave it. It answers "who was denied what, and why".
type decisionLog struct {
	handler slog.Handler
	args    string          // full | hash | none
	redact  map[string]bool // argument names whose values are hidden
	closer  io.Closer
	failed  func()
	log     *slog.Logger // where its own failures are told
	lastErr atomic.Pointer[error]
}

// openDecisionLog opens the configured output: stderr, stdout or a file
// (appended, created 0600).
func openDecisionLog(c config.DecisionLog, log *slog.Logger, failed func()) (*decisionLog, error) {
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

func newDecisionLog(w io.Writer, c config.DecisionLog, closer io.Closer, log *slog.Logger, failed func()) *decisionLog {
	if failed == nil {
		failed = func() {}
	}
	return &decisionLog{
		handler: slog.NewJSONHandler(w, nil),
		args:    c.Arguments,
		redact:  set(c.Redact),
		closer:  closer,
		failed:  failed,
		log:     log,
	}
}

// entry is one decision as logged.
type entry struct {
	ID             string
	Principal      *idp.Principal
	Action, Tool   string
	Arguments      map[string]any
	Visible        []string // tools/list: what was returned
	Hidden         []string // tools/list in dry-run: what would have been hidden
	Result, Reason string
	RequiredScopes []string
	Revision       string
	Eval           time.Duration
	Err            error
}

func (l *decisionLog) write(ctx context.Context, e entry) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "decision", 0)
	p := e.Principal
	r.AddAttrs(
		slog.String("decision_id", e.ID),
		slog.Group("principal",
			slog.String("sub", p.Sub), slog.String("iss", p.Iss), slog.String("provider", p.Provider),
			slog.String("org_id", p.OrgID), slog.String("client_id", p.ClientID)),
		slog.String("action", e.Action),
	)
	if e.Tool != "" {
		r.AddAttrs(slog.String("tool", e.Tool))
	}
	if e.Action == "tools/call" {
		switch l.args {
		case "none":
		case "hash":
			r.AddAttrs(slog.String("arguments_sha256", l.hash(e.Arguments)))
		default:
			r.AddAttrs(slog.Any("arguments", l.redacted(e.Arguments)))
		}
	}
	if e.Visible != nil {
		r.AddAttrs(slog.Any("visible_tools", e.Visible))
	}
	if len(e.Hidden) > 0 {
		r.AddAttrs(slog.Any("would_hide", e.Hidden))
	}
	r.AddAttrs(slog.String("result", e.Result))
	if e.Reason != "" {
		r.AddAttrs(slog.String("reason", e.Reason))
	}
	if len(e.RequiredScopes) > 0 {
		r.AddAttrs(slog.Any("required_scopes", e.RequiredScopes))
	}
	if e.Err != nil {
		r.AddAttrs(slog.String("error", e.Err.Error()))
	}
	r.AddAttrs(
		slog.String("policy_revision", e.Revision),
		slog.Float64("eval_ms", float64(e.Eval.Microseconds())/1000),
	)
	if err := l.handler.Handle(ctx, r); err != nil {
		if l.lastErr.Swap(&err) == nil {
			l.log.Error("decision log write failed; decisions are still enforced", "error", err)
		}
		l.failed()
		return
	}
	if l.lastErr.Swap(nil) != nil {
		l.log.Info("decision log writes again")
	}
}

// Err is why the latest line could not be written, or nil.
func (l *decisionLog) Err() error {
	if p := l.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *decisionLog) redacted(args map[string]any) map[string]any {
	if args == nil {
		return map[string]any{}
	}
	if len(l.redact) == 0 {
		return args
	}
	out := make(map[string]any, len(args))
	for k, v := range args {
		if l.redact[k] {
			v = "[redacted]"
		}
		out[k] = v
	}
	return out
}

// hash is a SHA-256 of the arguments' canonical JSON (encoding/json sorts
// object keys), so equal arguments give equal hashes.
func (l *decisionLog) hash(args map[string]any) string {
	if args == nil {
		args = map[string]any{}
	}
	b, _ := json.Marshal(args)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (l *decisionLog) Close() error {
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}
