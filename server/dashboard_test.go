package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"

	"github.com/toolgate/toolgate/idp/idptest"
	"github.com/toolgate/toolgate/upstream/upstreamtest"
)

// The Grafana dashboard shipped in dashboards/ must stay in step with the
// families toolgate exposes.

type dashboardJSON struct {
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's panels
}

func loadDashboard(t *testing.T) dashboardJSON {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "dashboards", "toolgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboards/toolgate.json: %v", err)
	}
	return d
}

// allPanels flattens the dashboard's panels, rows' nested panels included.
func allPanels(ps []dashboardPanel) []dashboardPanel {
	var out []dashboardPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var (
	promqlString     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlIdentifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlNameMatch  = regexp.MustCompile(`__name__\s*=\s*"([^"]*)"`)
)

// metricNames returns the toolgate_, go_ and process_ names an expression
// refers to. String literals are label values, not names, except the value
// of an exact __name__ matcher.
func metricNames(expr string) []string {
	var names []string
	for _, m := range promqlNameMatch.FindAllStringSubmatch(expr, -1) {
		names = append(names, m[1])
	}
	names = append(names, promqlIdentifier.FindAllString(promqlString.ReplaceAllString(expr, `""`), -1)...)
	return slices.DeleteFunc(names, func(n string) bool {
		return !strings.HasPrefix(n, "toolgate_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_")
	})
}

// dashboardMetrics maps every metric name the dashboard's queries (panel
// targets and template variables) refer to, to where it is referred to.
func dashboardMetrics(t *testing.T, d dashboardJSON) map[string][]string {
	t.Helper()
	refs := map[string][]string{}
	add := func(where, expr string) {
		for _, n := range metricNames(expr) {
			if !slices.Contains(refs[n], where) {
				refs[n] = append(refs[n], where)
			}
		}
	}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		var s string
		if json.Unmarshal(v.Query, &s) == nil {
			q.Query = s
		} else if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query: %v", v.Name, err)
		}
		add("variable "+v.Name, q.Query)
	}
	return refs
}

// familyTypes returns the TYPE of each family of an exposition.
func familyTypes(text string) map[string]string {
	types := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	return types
}

// Every metric the dashboard queries is exposed by a running toolgate that
// has made every kind of decision and reloaded its policy once.
func TestDashboardMetricsExist(t *testing.T) {
	refs := dashboardMetrics(t, loadDashboard(t))
	if len(refs) == 0 {
		t.Fatal("the dashboard refers to no metric at all")
	}

	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	// An upstream, as an issuer: their families have a series per
	// configured one, and none without.
	g := startGate(t, []*idptest.Tenant{tn}, withUpstreamServer(upstreamtest.Start(t).URL))
	traffic(t, g, tn)
	g.writePolicyFile("extra.rego", "package mcp.authz\n")
	var text string
	waitFor(t, "a policy reload", func() bool {
		text = g.scrape(g.URL + "/metrics")
		return strings.Contains(text, `toolgate_policy_reloads_total{result="success"} 1`)
	})
	fams := families(t, text)
	types := familyTypes(text)

	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		where := strings.Join(refs[name], "; ")
		if _, ok := fams[name]; ok {
			if types[name] == "histogram" {
				t.Errorf("%s (%s) is a histogram: query its _bucket, _sum or _count series", name, where)
			}
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			// Summaries have _sum and _count series too, but no _bucket.
			if ok && (types[base] == "histogram" || types[base] == "summary" && suffix != "_bucket") {
				found = true
			}
		}
		if !found {
			t.Errorf("the dashboard queries %s (%s), which toolgate does not expose", name, where)
		}
	}
	t.Logf("dashboard metrics: %s", strings.Join(names, " "))
}

// Every panel says what it is and queries something; ids are unique.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion = %d, want 39", d.SchemaVersion)
	}
	panels := allPanels(d.Panels)
	if len(panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	ids := map[int]string{}
	for _, p := range panels {
		if strings.TrimSpace(p.Title) == "" {
			t.Errorf("panel %d (%s) has no title", p.ID, p.Type)
		}
		if p.ID == 0 {
			t.Errorf("panel %q has no id", p.Title)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share the id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue // a row only groups panels
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable", p.Title)
		}
		exprs := 0
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) != "" {
				exprs++
			}
		}
		if exprs == 0 {
			t.Errorf("panel %q has no target with an expression", p.Title)
		}
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "issuer": "query", "tool": "query", "upstream": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %s is %q, want %q", name, vars[name], typ)
		}
	}
}

// selector is one vector selector of a PromQL expression: a metric and the
// label matchers it must satisfy.
type selector struct {
	name     string
	matchers []labelMatcher
}

type labelMatcher struct{ label, op, value string }

var promqlMatcher = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?`)

// selectors returns the selectors of expr on toolgate's, Go's and the
// process's metrics. A template variable in a matcher stands for its "All"
// value, what a freshly opened dashboard shows.
func selectors(t *testing.T, expr string, all map[string]string) []selector {
	t.Helper()
	// Blank string literals, keeping offsets, so that neither a brace nor a
	// name inside one is taken for syntax.
	blank := promqlString.ReplaceAllStringFunc(expr, func(s string) string { return `"` + strings.Repeat("_", len(s)-2) + `"` })
	var out []selector
	for _, loc := range promqlIdentifier.FindAllStringIndex(blank, -1) {
		s := selector{name: expr[loc[0]:loc[1]]}
		if len(metricNames(s.name)) == 0 {
			continue
		}
		rest := strings.TrimLeft(blank[loc[1]:], " ")
		if strings.HasPrefix(rest, "{") {
			open := len(blank) - len(rest)
			end := open + strings.Index(rest, "}")
			for body := expr[open+1 : end]; strings.TrimSpace(body) != ""; {
				m := promqlMatcher.FindStringSubmatch(body)
				if m == nil {
					t.Fatalf("%s: cannot read the matchers %q", expr, body)
				}
				value, err := strconv.Unquote(m[3])
				if err != nil {
					t.Fatalf("%s: %v", expr, err)
				}
				value = templateVariable.ReplaceAllStringFunc(value, func(v string) string {
					name := strings.Trim(v, "${}")
					a, ok := all[name]
					if !ok {
						t.Fatalf("%s: no All value for the variable %s", expr, name)
					}
					return a
				})
				s.matchers = append(s.matchers, labelMatcher{m[1], m[2], value})
				body = body[len(m[0]):]
			}
		}
		out = append(out, s)
	}
	return out
}

var templateVariable = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)

func (m labelMatcher) matches(ls model.LabelSet) bool {
	v := string(ls[model.LabelName(m.label)])
	switch m.op {
	case "=":
		return v == m.value
	case "!=":
		return v != m.value
	}
	re := regexp.MustCompile("^(?:" + m.value + ")$") // PromQL anchors its regular expressions
	return re.MatchString(v) == (m.op == "=~")
}

// series returns the series of an exposition that a selector selects; a
// histogram's _bucket, _sum and _count are its family's series.
func (s selector) series(fams map[string][]model.LabelSet, types map[string]string) []model.LabelSet {
	all, ok := fams[s.name]
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(s.name, suffix); cut && (types[base] == "histogram" || types[base] == "summary") {
				all = fams[base]
			}
		}
	}
	return slices.DeleteFunc(slices.Clone(all), func(ls model.LabelSet) bool {
		return slices.ContainsFunc(s.matchers, func(m labelMatcher) bool { return !m.matches(ls) })
	})
}

// On a toolgate just started, which has reloaded nothing and served nothing
// but scrapes, every series each panel and template variable queries
// exists: a dashboard shows 0, not "No data", and the variables list the
// configured issuers and the tools.
func TestDashboardSeriesOnAFreshInstance(t *testing.T) {
	d := loadDashboard(t)
	all := map[string]string{}
	for _, v := range d.Templating.List {
		all[v.Name] = ".*"
	}
	tn := idptest.NewTenant(t, idptest.ProviderAuth0)
	// Not startGate: its wait for readiness would be traffic. Scrapes, as
	// Prometheus makes them, until the issuer's keys have been fetched at
	// start (toolgate_jwks_last_success_age_seconds has no value before).
	// The upstream families, like the issuer ones, have a series per
	// configured upstream (at zero until it is listed) and none without
	// one, where the upstream panels say "No data": true, and what their
	// descriptions say. So the instance has an upstream, as it has an issuer.
	g := startGateNotReady(t, []*idptest.Tenant{tn}, withUpstreamServer(upstreamtest.Start(t).URL))
	var text string
	waitFor(t, "the issuer's keys", func() bool {
		resp, err := http.Get(g.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		text = string(b)
		// Both: a scrape collects its families concurrently, so one may
		// see the keys of a fetch whose age it collected before.
		return strings.Contains(text, `toolgate_jwks_keys{issuer="`+tn.Provider()+`"} `) &&
			!strings.Contains(text, `toolgate_jwks_keys{issuer="`+tn.Provider()+`"} 0`) &&
			strings.Contains(text, `toolgate_jwks_last_success_age_seconds{issuer="`+tn.Provider()+`"} `)
	})
	fams := families(t, text)
	types := familyTypes(text)

	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, s := range selectors(t, tg.Expr, all) {
				if len(s.series(fams, types)) == 0 {
					t.Errorf("panel %q: %s%v selects no series on a fresh instance", p.Title, s.name, s.matchers)
				}
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, q.Query)
			continue
		}
		n := 0
		for _, ls := range (selector{name: m[1]}).series(fams, types) {
			if ls[model.LabelName(m[2])] != "" {
				n++
			}
		}
		if n == 0 {
			t.Errorf("variable %s: %s has no series with a %s on a fresh instance", v.Name, m[1], m[2])
		}
	}
}
