package policy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// BundleOptions say where a fleet's policy bundle is and how to trust it.
type BundleOptions struct {
	URL      string
	Interval time.Duration // between polls
	// SigningKey, when set, is the PEM public key (or a path to it) that
	// every bundle must be signed with (OPA's bundle signing: `opa build
	// --signing-key`); KeyID and Algorithm name it as the signatures do.
	SigningKey string
	KeyID      string
	Algorithm  string
	// MaxBytes bounds a bundle.
	MaxBytes int64
}

// BundleSource downloads OPA bundles with OPA's own downloader: ETag-aware
// (an unchanged bundle is a 304 and costs nothing), size-bounded, and with
// signature verification when a key is given.
type BundleSource struct {
	opts BundleOptions
	d    *download.Downloader

	mu       sync.Mutex
	deliver  func(*bundle.Bundle, error) // where the next download goes
	goodETag string                      // of the bundle in force
}

// NewBundleSource prepares the downloader; nothing is fetched yet.
func NewBundleSource(o BundleOptions) (*BundleSource, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bundle url %q is not an absolute URL", o.URL)
	}
	restConfig := fmt.Sprintf(`{"url": %q}`, u.Scheme+"://"+u.Host)
	client, err := rest.New([]byte(restConfig), map[string]*keys.Config{}, rest.Logger(logging.NewNoOpLogger()))
	if err != nil {
		return nil, err
	}
	trigger := plugins.TriggerManual // toolgate polls on its own clock
	config := download.Config{Trigger: &trigger}
	if err := config.ValidateAndInjectDefaults(); err != nil {
		return nil, err
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 32 << 20
	}
	s := &BundleSource{opts: o}
	path := u.Path
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	s.d = download.New(config, client, path).
		WithSizeLimitBytes(o.MaxBytes).
		WithCallback(s.update)
	if o.SigningKey != "" {
		key := o.SigningKey
		if b, err := os.ReadFile(key); err == nil {
			key = string(b)
		}
		if o.KeyID == "" {
			o.KeyID = "default"
		}
		if o.Algorithm == "" {
			o.Algorithm = "RS256"
		}
		s.d = s.d.WithBundleVerificationConfig(bundle.NewVerificationConfig(
			map[string]*bundle.KeyConfig{o.KeyID: {Key: key, Algorithm: o.Algorithm}}, o.KeyID, "", nil))
	}
	return s, nil
}

func (s *BundleSource) update(_ context.Context, u download.Update) error {
	s.mu.Lock()
	deliver, good := s.deliver, s.goodETag
	s.mu.Unlock()
	switch {
	case u.Error != nil:
		deliver(nil, u.Error)
	case u.Bundle != nil:
		deliver(u.Bundle, nil)
	case u.ETag != "" && u.ETag == good:
		// A 304 for the bundle in force: the server is sound again and
		// serves what toolgate has, so a past failure is over.
		deliver(nil, nil)
	}
	return nil
}

func (s *BundleSource) applied(b *bundle.Bundle) {
	s.mu.Lock()
	s.goodETag = b.Etag
	s.mu.Unlock()
}

// First downloads bundles until one arrives or ctx ends: toolgate does not
// serve before it has a policy.
func (s *BundleSource) First(ctx context.Context) (*bundle.Bundle, error) {
	var got *bundle.Bundle
	var last error
	s.mu.Lock()
	s.deliver = func(b *bundle.Bundle, err error) { got, last = b, err }
	s.mu.Unlock()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		_ = s.d.Trigger(ctx)
		if got != nil {
			s.applied(got)
			return got, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("policy bundle %s: no bundle before the start-up deadline: %w", s.opts.URL, errors.Join(last, ctx.Err()))
		case <-time.After(delay):
		}
	}
}

// Poll downloads the bundle every interval until ctx ends and hands each
// new one to the engine, which keeps its last good policy when one does not
// compile or a download fails.
func (s *BundleSource) Poll(ctx context.Context, e *Engine) {
	s.mu.Lock()
	s.deliver = func(b *bundle.Bundle, err error) {
		switch {
		case err != nil:
			e.BundleFailed(fmt.Errorf("policy bundle %s: %w", s.opts.URL, err))
		case b == nil:
			e.ClearFailure()
		case e.SetBundle(b, s.opts.URL) == nil:
			s.applied(b)
		}
	}
	s.mu.Unlock()
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.d.Trigger(ctx)
		}
	}
}
