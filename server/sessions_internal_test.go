package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// An id serves no one until it is bound, then its principal only; the
// counts follow binds, streams and terminations, and the gauge with them.
func TestSessionsBindCountAndTerminate(t *testing.T) {
	var active int
	s := newSessions(nil, func(n int) { active = n })
	owns := func(id, owner string) bool { return s.check(id, owner, 100) == sessionOwned }
	id := s.Generate()
	if !strings.HasPrefix(id, "mcp-session-") || id == s.Generate() {
		t.Fatalf("ids: %q", id)
	}
	if _, err := s.Validate(id); err == nil || owns(id, "alice") {
		t.Fatal("an unbound id is valid")
	}
	s.bind(id, "alice")
	s.bind(id, "bob") // taken: stays alice's
	if _, err := s.Validate(id); err != nil || !owns(id, "alice") || owns(id, "bob") {
		t.Fatalf("bound id: %v, alice %v, bob %v", err, owns(id, "alice"), owns(id, "bob"))
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

// In a fleet, an id minted for an owner on one replica is adopted by
// another for that owner only, within the owner's limit there; an id
// deleted on a replica is not adopted there again; without the fleet's key
// nothing is adopted.
func TestSessionsAdoptTheFleetsIDs(t *testing.T) {
	key := []byte("a fleet key of at least thirty-two bytes")
	a, b := newSessions(key, nil), newSessions(key, nil)
	id := a.ResolveSessionIdManager(requestOf("alice")).Generate()
	a.bind(id, "alice")
	if got := b.check(id, "bob", 1); got != sessionUnknown {
		t.Errorf("another owner on b: %v", got)
	}
	if got := b.check(id, "alice", 1); got != sessionOwned || b.count["alice"] != 1 {
		t.Fatalf("its owner on b: %v, count %d", got, b.count["alice"])
	}
	if got := b.check(id, "alice", 1); got != sessionOwned || b.count["alice"] != 1 {
		t.Errorf("its owner on b again: %v, count %d (adopted once)", got, b.count["alice"])
	}
	second := a.ResolveSessionIdManager(requestOf("alice")).Generate()
	if got := b.check(second, "alice", 1); got != sessionFull {
		t.Errorf("a second session on b at alice's limit of 1: %v", got)
	}
	if _, err := b.ResolveSessionIdManager(requestOf("alice")).Terminate(id); err != nil {
		t.Fatal(err)
	}
	if got := b.check(id, "alice", 1); got != sessionUnknown {
		t.Errorf("the id deleted on b: %v", got)
	}
	if got := a.check(id, "alice", 1); got != sessionOwned {
		t.Errorf("the id on a, which no DELETE reached: %v", got)
	}
	// mcp-go's idle sweep (no request) forgets without ending.
	if _, err := a.ResolveSessionIdManager(nil).Terminate(id); err != nil || a.count["alice"] != 0 {
		t.Fatalf("swept: %v, count %d", err, a.count["alice"])
	}
	if got := a.check(id, "alice", 1); got != sessionOwned {
		t.Errorf("a swept id back on a: %v", got)
	}
	lone := newSessions(nil, nil)
	if got := lone.check(id, "alice", 1); got != sessionUnknown {
		t.Errorf("a replica without the fleet's key: %v", got)
	}
}

func requestOf(owner string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "/", nil)
	return r.WithContext(context.WithValue(r.Context(), ownerKey{}, owner))
}

// Past its bound, the set of ended ids forgets the oldest first.
func TestEndedForgetsTheOldest(t *testing.T) {
	e := newEnded(2)
	e.add("one")
	e.add("two")
	e.add("two")
	e.add("three")
	if e.has("one") || !e.has("two") || !e.has("three") || len(e.ids) != 2 {
		t.Errorf("ended: %v", e.ids)
	}
}
