package server

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/toolgate/toolgate/idp"
	"github.com/toolgate/toolgate/outcome"
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/upstream"
)

// Label values outside the bounded sets.
const (
	labelUnknown   = "unknown"   // a tool or issuer name not in the configuration
	labelAllTools  = "*"         // the tool label of a tools/list decision
	labelUnmatched = "unmatched" // the route label of a request no route matched
)

// Results of a policy decision (docs/observability.md, "Metrics").
const (
	resultAllow      = "allow"
	resultDeny       = "deny"
	resultError      = "error"
	resultDryRunDeny = "dry_run_deny"
)

// metrics are toolgate's Prometheus families, on a registry of their own.
// No label ever holds a subject, a token or a free-form string: tools come
// from the catalog, issuers and upstreams from the configuration, reasons
// from fixed codes.
type metrics struct {
	registry  *prometheus.Registry
	tools     atomic.Pointer[map[string]bool] // the catalog's names; setTools swaps it
	issuers   map[string]bool
	upstreams map[string]bool

	decisions       *prometheus.CounterVec
	evalDuration    *prometheus.HistogramVec
	validations     *prometheus.CounterVec
	jwksRefreshes   *prometheus.CounterVec
	jwksKeys        *prometheus.GaugeVec
	reloads         *prometheus.CounterVec
	revision        *prometheus.GaugeVec
	loadedAt        prometheus.Gauge
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	toolCalls       *prometheus.CounterVec
	toolDuration    *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec
	limitsStoreUp   prometheus.Gauge
	sessionsActive  prometheus.Gauge
	decisionLogFail prometheus.Counter
	refused         *prometheus.CounterVec
	upRequests      *prometheus.CounterVec
	upDuration      *prometheus.HistogramVec
	upUp            *prometheus.GaugeVec
	upProcesses     *prometheus.GaugeVec
	upToolChanges   *prometheus.CounterVec

	// The children of label values known at start, resolved once.
	evalTime   map[string]prometheus.Observer // by action
	validToken map[string]prometheus.Counter  // by configured issuer

	mu          sync.Mutex
	lastRefresh map[string]time.Time // issuer -> last good JWKS fetch
}

func newMetrics(tools, issuers, upstreams []string) *metrics {
	m := &metrics{
		registry:    prometheus.NewRegistry(),
		issuers:     set(issuers),
		upstreams:   set(upstreams),
		lastRefresh: map[string]time.Time{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_policy_decisions_total",
			Help: "Policy decisions by action, tool, result (allow, deny, error, dry_run_deny) and reason code.",
		}, []string{"action", "tool", "result", "reason"}),
		evalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "toolgate_policy_eval_duration_seconds",
			Help:    "Time to evaluate the policy for one decision.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}, []string{"action"}),
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_token_validations_total",
			Help: "Access token validations by configured issuer, result (valid, invalid) and reason code.",
		}, []string{"issuer", "result", "reason"}),
		jwksRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_jwks_refreshes_total",
			Help: "JWKS fetches by issuer and result (success, failure).",
		}, []string{"issuer", "result"}),
		jwksKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "toolgate_jwks_keys",
			Help: "Usable keys in the last good JWKS of each issuer.",
		}, []string{"issuer"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_policy_reloads_total",
			Help: "Policy reloads by result (success, failure).",
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "toolgate_policy_revision_info",
			Help: "The policy revision in force (content hash); always 1.",
		}, []string{"revision"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_requests_refused_total",
			Help: "Requests the gate refused itself, before MCP, by reason code (docs/http.md).",
		}, []string{"reason"}),
		loadedAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "toolgate_policy_loaded_timestamp_seconds",
			Help: "When the policy in force was loaded (Unix time).",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "toolgate_http_request_duration_seconds",
			Help:    "HTTP request duration by route and method (streams last as long as they are open).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"route", "method"}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_tool_calls_total",
			Help: "Tool calls that reached the handler stage, by tool and outcome (success, error, denied).",
		}, []string{"tool", "outcome"}),
		toolDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "toolgate_tool_call_duration_seconds",
			Help:    "Duration of allowed tool calls.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"tool"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_rate_limited_total",
			Help: "Calls allowed by the policy but refused because one of their limits had no room, by tool.",
		}, []string{"tool"}),
		limitsStoreUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "toolgate_limits_store_up",
			Help: "Whether the rate-limit store (limits.store) answered its last request or ping (1) or not (0).",
		}),
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "toolgate_sessions_active",
			Help: "MCP sessions currently open.",
		}),
		decisionLogFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "toolgate_decision_log_write_failures_total",
			Help: "Decision log lines that could not be written.",
		}),
		upRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_upstream_requests_total",
			Help: "Requests sent to upstream MCP servers, by upstream, MCP method and outcome (success, error, timeout, unavailable, refused, canceled).",
		}, []string{"upstream", "method", "outcome"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "toolgate_upstream_request_duration_seconds",
			Help:    "Duration of requests sent to upstream MCP servers, whatever their outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"upstream"}),
		upUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "toolgate_upstream_up",
			Help: "Whether the last tools/list of each upstream succeeded (1) or not (0): its tools are served only when 1.",
		}, []string{"upstream"}),
		upProcesses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "toolgate_upstream_processes",
			Help: "Processes running for each stdio upstream (one per open session).",
		}, []string{"upstream"}),
		upToolChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toolgate_upstream_tool_changes_total",
			Help: "Tools a pinned upstream withholds because their definition is not the lock file's, counted once per new definition.",
		}, []string{"upstream"}),
	}
	m.tools.Store(new(map[string]bool))
	m.registry.MustRegister(
		m.decisions, m.evalDuration, m.validations, m.jwksRefreshes, m.jwksKeys,
		m.reloads, m.revision, m.loadedAt, m.httpRequests, m.httpDuration,
		m.toolCalls, m.toolDuration, m.rateLimited, m.limitsStoreUp, m.sessionsActive, m.decisionLogFail, m.refused,
		m.upRequests, m.upDuration, m.upUp, m.upProcesses, m.upToolChanges,
		&jwksAge{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.evalTime = map[string]prometheus.Observer{}
	for _, action := range []string{policy.ActionList, policy.ActionCall, policy.ActionPromptsList, policy.ActionResourcesList} {
		m.evalTime[action] = m.evalDuration.WithLabelValues(action)
	}
	m.validToken = map[string]prometheus.Counter{}
	for _, is := range issuers {
		m.jwksKeys.WithLabelValues(is)
		m.validToken[is] = m.validations.WithLabelValues(is, "valid", "ok")
	}
	m.startAtZero(issuers, upstreams)
	m.setTools(tools)
	return m
}

// decisionOutcome is the result and reason labels of a decision.
type decisionOutcome struct {
	result string
	code   outcome.Code
}

// Label values known at start, beside the results above.
var (
	// callOutcomes are the result and reason of a call decision (decide,
	// in gate.go); listOutcomes those of a tools/list decision
	// (visibleTools).
	callOutcomes = []decisionOutcome{
		{resultAllow, outcome.Allowed},
		{resultDeny, outcome.NotVisible}, {resultDeny, outcome.InsufficientScope}, {resultDeny, outcome.PolicyDenied},
		{resultDeny, outcome.ArgumentsInvalid}, {resultError, outcome.EvaluationError},
		{resultDryRunDeny, outcome.NotVisible}, {resultDryRunDeny, outcome.InsufficientScope}, {resultDryRunDeny, outcome.PolicyDenied},
		{resultDryRunDeny, outcome.ArgumentsInvalid},
		{resultDeny, outcome.RateLimited}, {resultError, outcome.LimitsUnavailable}, {resultDryRunDeny, outcome.RateLimited},
	}
	listOutcomes = []decisionOutcome{{resultAllow, outcome.Allowed}, {resultError, outcome.EvaluationError}, {resultDryRunDeny, outcome.NotVisible}}
	// toolOutcomes are the outcomes of a call that reached its handler
	// (enforceCall).
	toolOutcomes = []string{"success", "error", "denied"}
	// issuerReasons are why idp refuses a token once it knows the issuer;
	// noIssuerReasons why it refuses one before (idp.Verifier.verify), which
	// counts under labelUnknown.
	issuerReasons = []idp.Reason{
		idp.ReasonKeysUnavailable, idp.ReasonKeyUnknown, idp.ReasonSignatureInvalid, idp.ReasonAlgNotAllowed,
		idp.ReasonExpired, idp.ReasonExpMissing, idp.ReasonNotYetValid, idp.ReasonIssuedInFuture,
		idp.ReasonAudienceMissing, idp.ReasonAudienceMismatch, idp.ReasonSubjectMissing, idp.ReasonClaimsInvalid,
	}
	noIssuerReasons = []idp.Reason{idp.ReasonMissing, idp.ReasonNotBearer, idp.ReasonInQuery,
		idp.ReasonTooLarge, idp.ReasonMalformed, idp.ReasonAlgNotAllowed, idp.ReasonIssuerUnknown}
	// mcpStatuses are the codes a POST to /mcp is answered with: success,
	// an accepted notification, and the gate's refusals (errors.go).
	mcpStatuses = []int{200, 202, 400, 401, 403, 404, 413, 429, 500, 503}
)

// startAtZero creates, at zero, every series whose label values are all
// known at start, so that a scrape of a toolgate that has not yet served
// anything has every family and a dashboard shows 0 instead of "No data".
// Known means taken from the configuration (issuer names), the catalog
// (tool names) or the fixed codes above; the catch-all labelUnknown only
// for the refusals of a token that names no configured issuer, and no
// value a request brings. A combination may be one the configuration never
// produces (dry_run_deny outside dry-run): it then stays at zero. That is
// at most, per tool, 10 decision, 3 tool-call series and a histogram (see
// setTools); per issuer 14 series; per upstream 18 request series, 2 gauges,
// a counter of tool changes and a histogram; and 19 more, plus one
// histogram, for everything else (one more with upstreams: a call of a
// withheld tool, tool_changed, counts under tool="unknown").
func (m *metrics) startAtZero(issuers, upstreams []string) {
	for _, o := range listOutcomes {
		m.decisions.WithLabelValues(policy.ActionList, labelAllTools, o.result, string(o.code))
	}
	for _, up := range upstreams {
		for _, method := range upstream.Methods {
			for _, o := range upstream.Outcomes {
				m.upRequests.WithLabelValues(up, method, o)
			}
		}
		m.upDuration.WithLabelValues(up)
		m.upUp.WithLabelValues(up)
		m.upProcesses.WithLabelValues(up)
		m.upToolChanges.WithLabelValues(up)
	}
	if len(upstreams) > 0 {
		m.decisions.WithLabelValues(policy.ActionCall, labelUnknown, resultDeny, string(outcome.ToolChanged))
	}
	for _, is := range issuers {
		for _, r := range issuerReasons {
			m.validations.WithLabelValues(is, "invalid", string(r))
		}
		m.jwksRefreshes.WithLabelValues(is, "success")
		m.jwksRefreshes.WithLabelValues(is, "failure")
	}
	for _, r := range noIssuerReasons {
		m.validations.WithLabelValues(labelUnknown, "invalid", string(r))
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	for _, code := range outcome.Codes(outcome.Gate) {
		m.refused.WithLabelValues(string(code))
	}
	for _, code := range mcpStatuses {
		m.httpRequests.WithLabelValues("/mcp", http.MethodPost, statusLabel(code))
	}
	m.httpDuration.WithLabelValues("/mcp", http.MethodPost)
}

func set(list []string) map[string]bool {
	out := make(map[string]bool, len(list))
	for _, s := range list {
		out[s] = true
	}
	return out
}

// setTools makes the tool labels follow the catalog (the built-in tools and
// the upstreams' tools being served): a tool new to it starts at zero, and
// the series of a tool that left it are deleted, so that an upstream that
// renames its tools cannot grow a scrape without bound. The bound is the
// catalog's size, at most upstream.MaxTools per upstream. A call that races
// with the swap may count under labelUnknown, or re-create a departed
// tool's series until its next departure.
func (m *metrics) setTools(tools []string) {
	old := *m.tools.Load()
	now := set(tools)
	for _, tool := range tools {
		if old[tool] {
			continue
		}
		for _, o := range callOutcomes {
			m.decisions.WithLabelValues(policy.ActionCall, tool, o.result, string(o.code))
		}
		for _, outcome := range toolOutcomes {
			m.toolCalls.WithLabelValues(tool, outcome)
		}
		m.toolDuration.WithLabelValues(tool)
		m.rateLimited.WithLabelValues(tool)
	}
	m.tools.Store(&now)
	for tool := range old {
		if !now[tool] {
			gone := prometheus.Labels{"tool": tool}
			m.decisions.DeletePartialMatch(gone)
			m.toolCalls.DeletePartialMatch(gone)
			m.toolDuration.DeletePartialMatch(gone)
			m.rateLimited.DeletePartialMatch(gone)
		}
	}
}

// tool bounds a tool label to the catalog.
func (m *metrics) tool(name string) string {
	if (*m.tools.Load())[name] {
		return name
	}
	return labelUnknown
}

// upstream bounds an upstream label to the configured names.
func (m *metrics) upstream(name string) string {
	if m.upstreams[name] {
		return name
	}
	return labelUnknown
}

func (m *metrics) upstreamRequest(up, method, outcome string, d time.Duration) {
	up = m.upstream(up)
	if !slices.Contains(upstream.Methods, method) {
		method = labelUnknown
	}
	if !slices.Contains(upstream.Outcomes, outcome) {
		outcome = labelUnknown
	}
	m.upRequests.WithLabelValues(up, method, outcome).Inc()
	m.upDuration.WithLabelValues(up).Observe(d.Seconds())
}

func (m *metrics) upstreamUp(up string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.upUp.WithLabelValues(m.upstream(up)).Set(v)
}

func (m *metrics) upstreamProcesses(up string, n int) {
	m.upProcesses.WithLabelValues(m.upstream(up)).Set(float64(n))
}

// issuer bounds an issuer label to the configured names.
func (m *metrics) issuer(name string) string {
	if m.issuers[name] {
		return name
	}
	return labelUnknown
}

func (m *metrics) tokenValidated(issuer string, reason idp.Reason) {
	if reason == "" {
		if c, ok := m.validToken[issuer]; ok {
			c.Inc()
			return
		}
		m.validations.WithLabelValues(labelUnknown, "valid", "ok").Inc()
		return
	}
	m.validations.WithLabelValues(m.issuer(issuer), "invalid", string(reason)).Inc()
}

func (m *metrics) jwksRefreshed(issuer string, err error, keys int) {
	issuer = m.issuer(issuer)
	if err != nil {
		m.jwksRefreshes.WithLabelValues(issuer, "failure").Inc()
		return
	}
	// The age first: a scrape that sees the keys sees their age.
	m.mu.Lock()
	m.lastRefresh[issuer] = time.Now()
	m.mu.Unlock()
	m.jwksRefreshes.WithLabelValues(issuer, "success").Inc()
	m.jwksKeys.WithLabelValues(issuer).Set(float64(keys))
}

func (m *metrics) decisionLogFailed(lines int) { m.decisionLogFail.Add(float64(lines)) }

func (m *metrics) policyReloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
}

func (m *metrics) policyInForce(revision string, loaded time.Time) {
	m.revision.Reset()
	m.revision.WithLabelValues(revision).Set(1)
	m.loadedAt.Set(float64(loaded.Unix()))
}

// jwksAge reports the seconds since each issuer's last good JWKS fetch,
// computed at scrape time.
type jwksAge struct{ m *metrics }

var jwksAgeDesc = prometheus.NewDesc("toolgate_jwks_last_success_age_seconds",
	"Seconds since the last good JWKS fetch of each issuer.", []string{"issuer"}, nil)

func (j *jwksAge) Describe(ch chan<- *prometheus.Desc) { ch <- jwksAgeDesc }

func (j *jwksAge) Collect(ch chan<- prometheus.Metric) {
	j.m.mu.Lock()
	defer j.m.mu.Unlock()
	for issuer, at := range j.m.lastRefresh {
		ch <- prometheus.MustNewConstMetric(jwksAgeDesc, prometheus.GaugeValue, time.Since(at).Seconds(), issuer)
	}
}

// handler serves the exposition format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

var httpMethods = []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodOptions}

// instrument counts requests by the route template that matched, never the
// raw path.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := labelUnmatched
		if cr := mux.CurrentRoute(r); cr != nil {
			if tpl, err := cr.GetPathTemplate(); err == nil {
				route = tpl
			}
		}
		m.observe(route, next, w, r)
	})
}

func (m *metrics) observe(route string, next http.Handler, w http.ResponseWriter, r *http.Request) {
	method := r.Method
	if !slices.Contains(httpMethods, method) {
		method = "other"
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	next.ServeHTTP(rec, r)
	m.httpRequests.WithLabelValues(route, method, statusLabel(rec.code)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
}

// statusLabels are the code label values of the valid HTTP status codes,
// formatted once instead of on every request.
var statusLabels = func() (labels [600]string) {
	for code := 100; code < len(labels); code++ {
		labels[code] = strconv.Itoa(code)
	}
	return labels
}()

func statusLabel(code int) string {
	if code >= 100 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}

// statusRecorder remembers the status code. It flushes (the MCP endpoint
// streams server-sent events), unwraps for http.ResponseController, and is
// the mcpserver.HTTPResponseWriter the gate hands mcp-go.
type statusRecorder struct {
	http.ResponseWriter
	code    int
	written bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.written {
		s.code, s.written = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.written = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	s.written = true
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// CanStream says whether Flush reaches the client (mcp-go's
// HTTPResponseWriter: it streams server-sent events only then).
func (s *statusRecorder) CanStream() bool {
	_, ok := s.ResponseWriter.(http.Flusher)
	return ok
}
