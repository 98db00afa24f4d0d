package server

import (
	"errors"
	"sync"

	"github.com/google/uuid"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// sessions binds every Mcp-Session-Id to the owner that created it: the
// principal (iss + sub, docs/http.md, "Sessions"), or for a token-less
// client its address (Server.owner). It counts the sessions and open
// streams each owner holds. It is mcp-go's SessionIdManager, which
// mints ids without knowing for whom: the gate binds an id when the
// initialize response that carries it is written, before the client can
// know it, and refuses every request whose id is not bound to its
// principal before mcp-go sees it.
type sessions struct {
	owner    sync.Map // session id -> principal key; read on every request, without a lock
	mu       sync.Mutex
	count    map[string]int // owner -> open sessions and streams
	open     int
	onChange func(active int)
	told     told // the tool list each session knows (notify.go)
}

var _ mcpserver.SessionIdManager = (*sessions)(nil)

func newSessions(onChange func(int)) *sessions {
	if onChange == nil {
		onChange = func(int) {}
	}
	return &sessions{count: map[string]int{}, onChange: onChange}
}

// mayOpen reports whether the principal holds fewer than limit sessions.
func (s *sessions) mayOpen(principal string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[principal] < limit
}

// owns reports whether the session exists and belongs to the principal.
func (s *sessions) owns(id, principal string) bool {
	owner, ok := s.owner.Load(id)
	return ok && owner.(string) == principal
}

// bind gives the new session id to the principal.
func (s *sessions) bind(id, principal string) {
	s.mu.Lock()
	if _, taken := s.owner.LoadOrStore(id, principal); taken {
		s.mu.Unlock()
		return
	}
	s.unlockAfter(principal, 1)
}

// openStream counts a long-lived stream (a GET, with or without a session
// id, or a 2026-07-28 subscriptions/listen) as one of the owner's places
// while it lasts, if it holds fewer than limit; release ends it.
func (s *sessions) openStream(principal string, limit int) (release func(), ok bool) {
	s.mu.Lock()
	if s.count[principal] >= limit {
		s.mu.Unlock()
		return nil, false
	}
	s.unlockAfter(principal, 1)
	return func() {
		s.mu.Lock()
		s.unlockAfter(principal, -1)
	}, true
}

// unlockAfter adds n to the principal's count, unlocks mu (which the
// caller holds), and reports the new total.
func (s *sessions) unlockAfter(principal string, n int) {
	s.open += n
	if s.count[principal] += n; s.count[principal] <= 0 {
		delete(s.count, principal)
	}
	open := s.open
	s.mu.Unlock()
	s.onChange(open)
}

// Generate mints a session id (mcpserver.SessionIdManager). It belongs to
// no one, and so serves no one, until bind.
func (s *sessions) Generate() string { return "mcp-session-" + uuid.NewString() }

var errNotBound = errors.New("session not found")

// Validate says whether id is a bound session. Whose it is, the gate has
// checked before mcp-go asks.
func (s *sessions) Validate(id string) (isTerminated bool, err error) {
	if _, ok := s.owner.Load(id); !ok {
		return false, errNotBound
	}
	return false, nil
}

// Terminate ends a session: a DELETE from its owner (the gate refuses
// anyone else's) or mcp-go's sweep of idle sessions.
func (s *sessions) Terminate(id string) (isNotAllowed bool, err error) {
	s.mu.Lock()
	owner, ok := s.owner.LoadAndDelete(id)
	s.told.forget(id)
	if !ok {
		s.mu.Unlock()
		return false, nil
	}
	s.unlockAfter(owner.(string), -1)
	return false, nil
}
