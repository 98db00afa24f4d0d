package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
)

var carol = &idp.Principal{Sub: "auth0|carol", Iss: "https://example.us.auth0.com/", Provider: "auth0", OrgID: "org_9", ClientID: "cli"}

// logLine writes e to a decision log configured by c (each line at once)
// and returns what reached the output.
func logLine(t *testing.T, c config.DecisionLog, e entry) string {
	t.Helper()
	var out bytes.Buffer
	l := newDecisionLog(&out, c, nil, slog.New(slog.DiscardHandler), nil)
	l.write(e)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	line, ok := strings.CutSuffix(out.String(), "\n")
	if !ok || strings.Contains(line, "\n") || !utf8.ValidString(line) {
		t.Fatalf("not one line of UTF-8: %q", out.String())
	}
	return line
}

// A line has the README's fields in the README's order, its time the
// decision's (in UTC), whatever the time the line is written.
func TestDecisionLogLine(t *testing.T) {
	at := time.Date(2026, 11, 28, 20, 24, 21, 500_000_000, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		name string
		e    entry
		want string
	}{
		{"call", entry{ID: "8f0c", Principal: carol, Action: policy.ActionCall, Tool: "image_generation", Server: "builtin",
			Arguments: []byte(`{"prompt":"x"}`), Result: resultDeny, Code: outcome.InsufficientScope,
			Reason: `tool "image_generation" requires scope images:write`, RequiredScopes: []string{"images:write"},
			Revision: "54c187defdc7", At: at, Eval: 412 * time.Microsecond},
			`{"time":"2026-11-28T19:24:21.5Z","level":"INFO","msg":"decision","decision_id":"8f0c",` +
				`"principal":{"sub":"auth0|carol","iss":"https://example.us.auth0.com/","provider":"auth0","org_id":"org_9","client_id":"cli"},` +
				`"action":"tools/call","tool":"image_generation","server":"builtin","arguments":{"prompt":"x"},"result":"deny","reason_code":"insufficient_scope",` +
				`"reason":"tool \"image_generation\" requires scope images:write","required_scopes":["images:write"],` +
				`"policy_revision":"54c187defdc7","eval_ms":0.412}`},
		{"call of a tool not in the catalog", entry{ID: "2", Principal: carol, Action: policy.ActionCall, Tool: "nope",
			Result: resultDeny, Code: outcome.NotVisible, Revision: "r", At: at},
			`{"time":"2026-11-28T19:24:21.5Z","level":"INFO","msg":"decision","decision_id":"2",` +
				`"principal":{"sub":"auth0|carol","iss":"https://example.us.auth0.com/","provider":"auth0","org_id":"org_9","client_id":"cli"},` +
				`"action":"tools/call","tool":"nope","arguments":{},"result":"deny","reason_code":"not_visible","policy_revision":"r","eval_ms":0}`},
		{"list", entry{ID: "9a1d", Principal: &idp.Principal{Sub: "s"}, Action: policy.ActionList,
			Visible: []string{"add"}, Hidden: []string{"image_generation"}, Result: resultDryRunDeny, Code: outcome.NotVisible,
			Err: errors.New("boom"), Revision: "r", At: at, Eval: 3 * time.Millisecond},
			`{"time":"2026-11-28T19:24:21.5Z","level":"INFO","msg":"decision","decision_id":"9a1d",` +
				`"principal":{"sub":"s","iss":"","provider":"","org_id":"","client_id":""},` +
				`"action":"tools/list","visible_tools":["add"],"would_hide":["image_generation"],"result":"dry_run_deny",` +
				`"reason_code":"not_visible","error":"boom","policy_revision":"r","eval_ms":3}`},
		{"nothing visible", entry{ID: "1", Principal: carol, Action: policy.ActionList, Visible: []string{},
			Result: resultAllow, Code: outcome.Allowed, Revision: "r", At: at},
			`{"time":"2026-11-28T19:24:21.5Z","level":"INFO","msg":"decision","decision_id":"1",` +
				`"principal":{"sub":"auth0|carol","iss":"https://example.us.auth0.com/","provider":"auth0","org_id":"org_9","client_id":"cli"},` +
				`"action":"tools/list","visible_tools":[],"result":"allow","reason_code":"allowed","policy_revision":"r","eval_ms":0}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := logLine(t, config.DecisionLog{Arguments: "full"}, c.e); got != c.want {
				t.Errorf("line\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// eval_ms is in milliseconds to the microsecond, as the shortest decimal.
func TestDecisionLogEvalMillis(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                   "0",
		time.Microsecond:                    "0.001",
		12 * time.Microsecond:               "0.012",
		120 * time.Microsecond:              "0.12",
		999*time.Microsecond + 999:          "0.999",
		time.Millisecond:                    "1",
		1500 * time.Microsecond:             "1.5",
		2469 * time.Microsecond:             "2.469",
		3*time.Second + 40*time.Microsecond: "3000.04",
		20 * time.Minute:                    "1200000",
		-time.Millisecond:                   "0",
	} {
		line := logLine(t, config.DecisionLog{}, entry{Principal: carol, Action: policy.ActionList, At: time.Now(), Eval: d})
		if !strings.HasSuffix(line, `,"eval_ms":`+want+`}`) {
			t.Errorf("%v: %s, want eval_ms %s", d, line, want)
		}
	}
}

// Arguments are logged on one line as JSON, whichever way they came and
// whatever the engine made of them; what is not JSON (a call denied for its
// arguments) is logged as a string, or hidden whole when names are to be
// redacted. hash and none never show them.
func TestDecisionLogArguments(t *testing.T) {
	for _, c := range []struct {
		mode, redact string
		raw          string
		err          error // the engine's, for the call
		want         string
	}{
		{"full", "", `{"a":2,"b":3}`, nil, `{"a":2,"b":3}`},
		{"full", "", "{\"a\": 2,\n \"b\":\"x y\"}", nil, `{"a":2,"b":"x y"}`},
		{"full", "", "{\"a\":\n2}", errors.New("bad"), `{"a":2}`},
		{"full", "", `{"html":"<b>&</b>"}`, nil, `{"html":"<b>&</b>"}`},
		{"full", "", "", nil, `{}`},
		{"full", "", "null", nil, `{}`},
		{"full", "", `{"a":`, errors.New("bad"), `"{\"a\":"`},
		{"full", "", "not\nJSON", errors.New("bad"), `"not\nJSON"`},
		{"full", "", `{"a":`, nil, `"{\"a\":"`}, // not JSON, whatever the engine said
		{"full", "", "\"\xff\"", nil, `"\"\ufffd\""`},
		{"full", "a", `{"b":2, "a":"secret", "c":"<"}`, nil, `{"a":"[redacted]","b":2,"c":"<"}`},
		{"full", "a", `[1]`, nil, `"[redacted]"`}, // not an object: which values to hide is not known
		{"full", "a", `{"a":"secret", "b":`, errors.New("bad"), `"[redacted]"`},
		{"full", "a", "{\"a\":\"secret\xff\"}", nil, `{"a":"[redacted]"}`},
		{"full", "a", `"a"`, nil, `"[redacted]"`},
		{"hash", "", `{"a":2}`, nil, ""},
		{"none", "", `{"a":2}`, nil, ""},
	} {
		line := logLine(t, config.DecisionLog{Arguments: c.mode, Redact: strings.Fields(c.redact)},
			entry{Principal: carol, Action: policy.ActionCall, Tool: "t", Arguments: []byte(c.raw), Err: c.err, At: time.Now()})
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Errorf("%s %q: not JSON: %s", c.mode, c.raw, line)
			continue
		}
		// The same JSON value: how a character is escaped is the encoder's.
		var got, want any
		_ = json.Unmarshal(fields["arguments"], &got)
		_ = json.Unmarshal([]byte(c.want), &want)
		if (len(fields["arguments"]) == 0) != (c.want == "") || !reflect.DeepEqual(got, want) {
			t.Errorf("%s %q: arguments %s, want %s", c.mode, c.raw, fields["arguments"], c.want)
		}
		if hash := string(fields["arguments_sha256"]); (c.mode == "hash") != (len(hash) == 66) {
			t.Errorf("%s %q: arguments_sha256 %s", c.mode, c.raw, hash)
		}
	}
}

// A string in a log line reads back as encoding/json would write it, on
// one line.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "auth0|carol", `say "hi"\n`, "tab\there", "a\x00b\x1fc", "é ü 漢 🙂",
		"bad \xff byte", "\xe2\x82", "\xef\xbf\xbd", "\u2028\u2029", "</script>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		line := appendString(nil, s)
		var got string
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: not JSON: %v", s, line, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Errorf("appendString(%q) reads back as %q, encoding/json as %q", s, got, wantS)
		}
		for _, c := range line {
			if c < 0x20 {
				t.Fatalf("appendString(%q) = %q: a control byte in the line", s, line)
			}
		}
		if !utf8.Valid(line) {
			t.Errorf("appendString(%q) = %q: not UTF-8", s, line)
		}
	})
}

// BenchmarkDecisionLogLine is what every decision pays for its log line:
// a new decision id, the line built and queued for the next flush.
func BenchmarkDecisionLogLine(b *testing.B) {
	l := newDecisionLog(io.Discard, config.DecisionLog{Arguments: "full", FlushInterval: time.Second}, nil, slog.New(slog.DiscardHandler), nil)
	defer l.Close()
	p := &idp.Principal{Sub: "auth0|5f7c8ec7c33c6c004bbafe82", Iss: "https://tenant.auth0.com/", Provider: "auth0", OrgID: "org_123", ClientID: "abc"}
	args := []byte(`{"a":2,"b":3}`)
	b.ReportAllocs()
	for b.Loop() {
		l.write(entry{ID: policy.NewID(), Principal: p, Action: policy.ActionCall, Tool: "add", Arguments: args,
			Result: resultAllow, Revision: "a00c0521a69d", At: time.Now(), Eval: 3 * time.Microsecond})
	}
}
