package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"

	mcpserver "github.com/mark3labs/mcp-go/server"
)

// sessions binds every Mcp-Session-Id to the owner that created it: the
// principal (iss + sub, docs/http.md, "Sessions"), or for a token-less
// client its address (Server.owner). It counts the sessions and open
// streams each owner holds, on this replica. The gate refuses every
// request whose id is not bound to its owner before mcp-go sees it.
//
// An id is a random part and an HMAC-SHA256 (RFC 2104) of it and its
// owner under the session key. With the fleet's key (sessions.key_env),
// a replica that has not seen an id yet verifies it against the owner
// that presents it and, when it holds, binds it here (adopts it): any
// replica serves a session to its principal, and to no one else, without
// shared state (docs/architecture.md, "A fleet"). Without that key the
// key is this process's own and nothing is adopted: an id serves where it
// was bound only.
type sessions struct {
	owner    sync.Map // session id -> owner key; read on every request, without a lock
	mu       sync.Mutex
	count    map[string]int // owner -> open sessions and streams
	open     int
	onChange func(active int)
	key      []byte
	fleet    bool            // key is the fleet's: adopt the ids it verifies
	ended    *ended          // ids deleted here or, told by shared, elsewhere: never adopted again (fleet only)
	shared   *sharedEnds     // the ends of the fleet's other replicas; nil: none
	told     told            // the tool list each session knows (notify.go)
	onEnd    func(id string) // a session forgotten here (its subscriptions end)
}

var (
	_ mcpserver.SessionIdManager         = (*sessions)(nil)
	_ mcpserver.SessionIdManagerResolver = (*sessions)(nil)
)

const (
	sessionPrefix = "mcp-session-"
	nonceBytes    = 16
	// macBytes is the HMAC truncated to half of SHA-256's output, the
	// least RFC 2104 §5 recommends.
	macBytes = 16
	// maxEnded bounds the ids remembered as deleted (about 100 bytes each).
	maxEnded = 100_000
)

// newSessions makes the sessions of one replica; fleetKey, when not nil, is
// the key the fleet shares.
func newSessions(fleetKey []byte, onChange func(int)) *sessions {
	if onChange == nil {
		onChange = func(int) {}
	}
	s := &sessions{count: map[string]int{}, onChange: onChange, key: fleetKey, fleet: fleetKey != nil}
	if !s.fleet {
		s.key = make([]byte, 32)
		_, _ = rand.Read(s.key) // never fails (crypto/rand)
	} else {
		s.ended = newEnded(maxEnded)
	}
	return s
}

// mint makes a new id for owner.
func (s *sessions) mint(owner string) string {
	b := make([]byte, nonceBytes, nonceBytes+macBytes)
	_, _ = rand.Read(b)
	b = append(b, s.mac(b, owner)...)
	return sessionPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// mac is the id's HMAC: the random part, then the owner, under the key.
func (s *sessions) mac(nonce []byte, owner string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("toolgate session v1\x00"))
	m.Write(nonce)
	m.Write([]byte(owner))
	return m.Sum(nil)[:macBytes]
}

// verifies reports whether id was minted for owner under the key.
func (s *sessions) verifies(id, owner string) bool {
	enc, ok := strings.CutPrefix(id, sessionPrefix)
	if !ok || len(enc) != base64.RawURLEncoding.EncodedLen(nonceBytes+macBytes) {
		return false
	}
	// Strict: one id has one spelling, or an id could be adopted twice.
	b, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return false
	}
	return hmac.Equal(b[nonceBytes:], s.mac(b[:nonceBytes], owner))
}

// mayOpen reports whether the owner holds fewer than limit sessions.
func (s *sessions) mayOpen(owner string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[owner] < limit
}

// A sessionCheck is what the gate makes of a request's session id.
type sessionCheck int

const (
	sessionOwned   sessionCheck = iota // bound to the owner, here or now
	sessionUnknown                     // unknown, deleted, or another owner's: 404
	sessionFull                        // the owner's, but it holds limit places here: 429
)

// check says whether the session id serves owner. An id bound here serves
// its owner only. An id this replica has not seen is adopted, in a fleet,
// when it was minted for owner, was not deleted here, and the owner holds
// fewer than limit places here (adopting takes one, as opening does).
func (s *sessions) check(id, owner string, limit int) sessionCheck {
	if bound, ok := s.owner.Load(id); ok {
		if bound.(string) == owner {
			return sessionOwned
		}
		return sessionUnknown
	}
	if !s.fleet || !s.verifies(id, owner) || s.ended.has(id) {
		return sessionUnknown
	}
	if s.endedElsewhere(id) {
		s.ended.add(id)
		return sessionUnknown
	}
	s.mu.Lock()
	if s.count[owner] >= limit {
		s.mu.Unlock()
		return sessionFull
	}
	if _, taken := s.owner.LoadOrStore(id, owner); taken { // adopted meanwhile
		s.mu.Unlock()
		return s.check(id, owner, limit)
	}
	s.unlockAfter(owner, 1)
	if s.ended.has(id) { // ended elsewhere while it was read: forget has run, or runs after this
		_, _ = s.Terminate(id)
		return sessionUnknown
	}
	return sessionOwned
}

// bind gives the new session id to the owner.
func (s *sessions) bind(id, owner string) {
	s.mu.Lock()
	if _, taken := s.owner.LoadOrStore(id, owner); taken {
		s.mu.Unlock()
		return
	}
	s.unlockAfter(owner, 1)
}

// openStream counts a long-lived stream (a GET, with or without a session
// id, or a 2026-07-28 subscriptions/listen) as one of the owner's places
// while it lasts, if it holds fewer than limit; release ends it.
func (s *sessions) openStream(owner string, limit int) (release func(), ok bool) {
	s.mu.Lock()
	if s.count[owner] >= limit {
		s.mu.Unlock()
		return nil, false
	}
	s.unlockAfter(owner, 1)
	return func() {
		s.mu.Lock()
		s.unlockAfter(owner, -1)
	}, true
}

// unlockAfter adds n to the owner's count, unlocks mu (which the caller
// holds), and reports the new total.
func (s *sessions) unlockAfter(owner string, n int) {
	s.open += n
	if s.count[owner] += n; s.count[owner] <= 0 {
		delete(s.count, owner)
	}
	open := s.open
	s.mu.Unlock()
	s.onChange(open)
}

// Generate mints an id for no one (mcpserver.SessionIdManager): it serves
// no one until bind. The gate's requests mint through ResolveSessionIdManager.
func (s *sessions) Generate() string { return s.mint("") }

var errNotBound = errors.New("session not found")

// Validate says whether id is a bound session. Whose it is, the gate has
// checked before mcp-go asks.
func (s *sessions) Validate(id string) (isTerminated bool, err error) {
	if _, ok := s.owner.Load(id); !ok {
		return false, errNotBound
	}
	return false, nil
}

// Terminate forgets a session here: mcp-go's sweep of sessions idle on this
// replica. In a fleet that is not the session's end (it may be busy on
// another replica), and the id is adopted again if it comes back.
func (s *sessions) Terminate(id string) (isNotAllowed bool, err error) {
	s.mu.Lock()
	owner, ok := s.owner.LoadAndDelete(id)
	s.told.forget(id)
	if !ok {
		s.mu.Unlock()
		return false, nil
	}
	s.unlockAfter(owner.(string), -1)
	if s.onEnd != nil {
		s.onEnd(id)
	}
	return false, nil
}

// ownerKey is the context key of the request's owner, for the manager that
// ResolveSessionIdManager returns.
type ownerKey struct{}

// ResolveSessionIdManager is the manager for one of the gate's requests
// (mcpserver.SessionIdManagerResolver): it mints ids for the request's
// owner, and its Terminate is a DELETE's. Without a request (mcp-go's
// idle sweep) it is s.
func (s *sessions) ResolveSessionIdManager(r *http.Request) mcpserver.SessionIdManager {
	if r == nil {
		return s
	}
	owner, _ := r.Context().Value(ownerKey{}).(string)
	return requestSessions{s, owner}
}

// requestSessions is the session manager of one request of owner.
type requestSessions struct {
	*sessions
	owner string
}

func (r requestSessions) Generate() string { return r.mint(r.owner) }

// Terminate ends a session on its owner's DELETE (the gate refuses anyone
// else's, MCP basic/transports, "Session Management"): the id is never
// adopted here again, nor, with shared ends, by any replica
// (docs/deployment.md, "Ended sessions").
func (r requestSessions) Terminate(id string) (isNotAllowed bool, err error) {
	if r.fleet {
		r.ended.add(id)
		r.shareEnd(id)
	}
	return r.sessions.Terminate(id)
}

// ended is a bounded set of ids: past max, the oldest is forgotten.
type ended struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

func newEnded(max int) *ended {
	return &ended{ids: make(map[string]struct{}), ring: make([]string, max)}
}

func (e *ended) add(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.ids[id]; ok {
		return
	}
	delete(e.ids, e.ring[e.next])
	e.ring[e.next] = id
	e.ids[id] = struct{}{}
	e.next = (e.next + 1) % len(e.ring)
}

func (e *ended) has(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.ids[id]
	return ok
}
