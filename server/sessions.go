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
	owner    sync.Map // session id -> principal key; read on every request, without a lock
	mu       sync.Mutex
	count    map[string]int // principal key -> open sessions
	open     int
	onChange func(active int)
}

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
	m.s.owner.Store(id, m.principal)
	m.s.count[m.principal]++
	m.s.open++
	n := m.s.open
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
	v, ok := m.s.owner.Load(id)
	owner, _ := v.(string)
	if ok && (!m.known || owner == m.principal) {
		m.s.owner.Delete(id)
		m.s.open--
		if m.s.count[owner]--; m.s.count[owner] <= 0 {
			delete(m.s.count, owner)
		}
	}
	n := m.s.open
	m.s.mu.Unlock()
	if ok && m.known && owner != m.principal {
		return true, nil // not allowed: another principal's session
	}
	m.s.onChange(n)
	return false, nil
}
