package server

import (
	"testing"
	"time"
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
