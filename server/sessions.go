package server

import (
	"errors"
	"net/http"
	"sync"

	"github.com/google/uuid"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/idp"
)

// sessions binds every Mcp-Session-Id to the principal (iss + sub) that
// created it (CONTRACT.md, "Sessions"). mcp-go asks it through the
// SessionIdManagerResolver; the gate's middleware asks it first, because
// mcp-go does not validate the id of a GET stream.
type sessions struct {
	mu       sync.Mutex
	owner    map[string]string // session id -> principal key
	count    map[string]int    // principal key -> open sessions
	onChange func(active int)
}

func newSessions(onChange func(int)) *sessions {
	if onChange == nil {
		onChange = func(int) {}
	}
	return &sessions{owner: map[string]string{}, count: map[string]int{}, onChange: onChange}
}

// mayOpen reports whether the principal holds fewer than limit sessions.
func (s *sessions) mayOpen(principal string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[principal] < limit
}

// owns reports whether the session exists and belongs to the principal.
func (s *sessions) owns(id, principal string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner, ok := s.owner[id]
	return ok && owner == principal
}

// ResolveSessionIdManager implements mcpserver.SessionIdManagerResolver. A
// nil request (mcp-go's idle sweeper) gets a manager that may only
// terminate.
func (s *sessions) ResolveSessionIdManager(r *http.Request) mcpserver.SessionIdManager {
	m := boundManager{s: s}
	if r != nil {
		if p, ok := idp.PrincipalFrom(r.Context()); ok {
			m.principal, m.known = p.Key(), true
		}
	}
	return m
}

type boundManager struct {
	s         *sessions
	principal string
	known     bool
}

var errNotYours = errors.New("session not found")

func (m boundManager) Generate() string {
	if !m.known {
		return "" // never reached behind the gate; no id means no session
	}
	id := "mcp-session-" + uuid.NewString()
	m.s.mu.Lock()
	m.s.owner[id] = m.principal
	m.s.count[m.principal]++
	n := len(m.s.owner)
	m.s.mu.Unlock()
	m.s.onChange(n)
	return id
}

func (m boundManager) Validate(id string) (bool, error) {
	if !m.known || !m.s.owns(id, m.principal) {
		return false, errNotYours
	}
	return false, nil
}

func (m boundManager) Terminate(id string) (bool, error) {
	m.s.mu.Lock()
	owner, ok := m.s.owner[id]
	if ok && (!m.known || owner == m.principal) {
		delete(m.s.owner, id)
		if m.s.count[owner]--; m.s.count[owner] <= 0 {
			delete(m.s.count, owner)
		}
	}
	n := len(m.s.owner)
	m.s.mu.Unlock()
	if ok && m.known && owner != m.principal {
		return true, nil // not allowed: another principal's session
	}
	m.s.onChange(n)
	return false, nil
}
