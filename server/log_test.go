package server_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// logBuffer keeps what the gate logs during a test, to assert on it and to
// show it when the test fails.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var logs sync.Map // testing.TB -> *logBuffer

func testLogger(t testing.TB) *slog.Logger {
	buf := &logBuffer{}
	logs.Store(t, buf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gate log:\n%s", buf.String())
		}
		logs.Delete(t)
	})
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func logOf(t testing.TB) string {
	if b, ok := logs.Load(t); ok {
		return b.(*logBuffer).String()
	}
	return ""
}
