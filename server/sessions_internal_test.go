package server

import (
	"strings"
	"testing"
)

// An id serves no one until it is bound, then its principal only; the
// counts follow binds, streams and terminations, and the gauge with them.
func TestSessionsBindCountAndTerminate(t *testing.T) {
	var active int
	s := newSessions(func(n int) { active = n })
	id := s.Generate()
	if !strings.HasPrefix(id, "mcp-session-") || id == s.Generate() {
		t.Fatalf("ids: %q", id)
	}
	if _, err := s.Validate(id); err == nil || s.owns(id, "alice") {
		t.Fatal("an unbound id is valid")
	}
	s.bind(id, "alice")
	s.bind(id, "bob") // taken: stays alice's
	if _, err := s.Validate(id); err != nil || !s.owns(id, "alice") || s.owns(id, "bob") {
		t.Fatalf("bound id: %v, alice %v, bob %v", err, s.owns(id, "alice"), s.owns(id, "bob"))
	}
	if !s.mayOpen("alice", 2) || s.mayOpen("alice", 1) || active != 1 {
		t.Errorf("after one bind: mayOpen(2) %v, mayOpen(1) %v, active %d", s.mayOpen("alice", 2), s.mayOpen("alice", 1), active)
	}
	release, ok := s.openStream("alice", 2)
	if !ok || active != 2 {
		t.Fatalf("a stream under the limit: %v, active %d", ok, active)
	}
	if _, ok := s.openStream("alice", 2); ok {
		t.Error("a stream over the limit was opened")
	}
	release()
	if notAllowed, err := s.Terminate(id); notAllowed || err != nil {
		t.Errorf("Terminate: %v %v", notAllowed, err)
	}
	if _, err := s.Validate(id); err == nil || active != 0 || len(s.count) != 0 {
		t.Errorf("after terminate: valid %v, active %d, counts %v", err == nil, active, s.count)
	}
	if notAllowed, err := s.Terminate(id); notAllowed || err != nil || active != 0 {
		t.Errorf("a second Terminate: %v %v, active %d", notAllowed, err, active)
	}
}
