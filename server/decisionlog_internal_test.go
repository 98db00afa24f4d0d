package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/toolgate/toolgate/config"
	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/policy"
)

func TestAppendMillis(t *testing.T) {
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
		-time.Millisecond:                   "0",
	} {
		if got := string(appendMillis([]byte("x"), d)); got != "x"+want {
			t.Errorf("appendMillis(%v) = %q, want %q", d, got, "x"+want)
		}
	}
}

// Arguments are logged on one line as JSON, whichever way they came; what
// the engine could not decode is logged as a string.
func TestAppendArguments(t *testing.T) {
	l := &decisionLog{args: "full"}
	for _, c := range []struct {
		raw    string
		parsed bool
		want   string
	}{
		{`{"a":2,"b":3}`, true, `{"a":2,"b":3}`},
		{"{\"a\": 2,\n \"b\":\"x y\"}", true, `{"a":2,"b":"x y"}`},
		{"{\"a\":\n2}", false, `{"a":2}`},
		{"", true, `{}`},
		{"null", true, `{}`},
		{`{"a":`, false, `"{\"a\":"`},
		{"not\nJSON", false, `"not\u000aJSON"`},
	} {
		got := string(l.appendArguments(nil, []byte(c.raw), c.parsed))
		if want := `,"arguments":` + c.want; got != want {
			t.Errorf("appendArguments(%q, %v) = %s, want %s", c.raw, c.parsed, got, want)
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
