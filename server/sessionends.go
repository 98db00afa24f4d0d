package server

import (
	"context"
	"log/slog"
	"time"
)

// SessionEnds shares the ends of sessions among the replicas of a fleet
// (a *sessionend.Redis on limits.store): an id its owner deleted on one
// replica is answered 404 by all of them, as MCP basic/transports,
// "Session Management" has a server that ended a session answer it.
type SessionEnds interface {
	// End records that the session id ended, for ttl, and tells the
	// replicas that watch.
	End(ctx context.Context, id string, ttl time.Duration) error
	// Ended reports, for each of ids, whether it was ended.
	Ended(ctx context.Context, ids []string) ([]bool, error)
	// Watch calls ended with each id another replica ends, and resync
	// whenever ends may have been missed, until ctx is done.
	Watch(ctx context.Context, ended func(id string), resync func())
}

// sharedEnds is what the sessions of a fleet's replica do with the ends
// of the others. The cost is on the first sight of an id (one read before
// adopting it) and on a DELETE (one write); a request in a session already
// bound here reads nothing (docs/deployment.md, "Ended sessions").
type sharedEnds struct {
	SessionEnds
	timeout time.Duration // limits.store_timeout
	log     *slog.Logger
}

// endedElsewhere reports whether another replica ended id. With the store
// unreachable it reports false: the id still serves only the principal it
// was minted for, and a session must not stop working while Redis is down.
func (s *sessions) endedElsewhere(id string) bool {
	if s.shared == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.shared.timeout)
	defer cancel()
	ended, err := s.shared.Ended(ctx, []string{id})
	if err != nil {
		s.shared.log.Warn("the ends of the fleet's sessions cannot be read; adopting the session", "err", err)
		return false
	}
	return ended[0]
}

// shareEnd records the end of id for the other replicas. With the store
// unreachable, the session ends here only.
func (s *sessions) shareEnd(id string) {
	if s.shared == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.shared.timeout)
	defer cancel()
	if err := s.shared.End(ctx, id, SessionIdleTTL); err != nil {
		s.shared.log.Warn("the end of a session cannot be shared; it ends on this replica only", "err", err)
	}
}

// forget ends id here because another replica ended it.
func (s *sessions) forget(id string) {
	s.ended.add(id)
	_, _ = s.Terminate(id)
}

// resync forgets the ids bound here that were ended while this replica
// may have missed the news.
func (s *sessions) resync() {
	var ids []string
	s.owner.Range(func(id, _ any) bool {
		ids = append(ids, id.(string))
		return true
	})
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.shared.timeout+time.Duration(len(ids)/1000)*s.shared.timeout)
	defer cancel()
	ended, err := s.shared.Ended(ctx, ids)
	if err != nil {
		s.shared.log.Warn("the ends of the fleet's sessions cannot be read", "err", err)
		return
	}
	for i, id := range ids {
		if ended[i] {
			s.forget(id)
		}
	}
}

// watchEnds is a Task: it follows the ends of the other replicas.
func (s *sessions) watchEnds(ctx context.Context) (func(), error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.shared.Watch(ctx, s.forget, s.resync)
	}()
	return func() { <-done }, nil
}
