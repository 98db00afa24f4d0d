package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/idp/idptest"
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
	g := startGate(t, []*idptest.Tenant{tn})
	traffic(t, g, tn)
	g.writePolicyFile("extra.rego", "package mcp.authz\n")
	var text string
	waitFor(t, "a policy reload", func() bool {
		text = g.scrape(g.URL + "/metrics")
		return strings.Contains(text, "toolgate_policy_reloads_total{")
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
	for name, typ := range map[string]string{"datasource": "datasource", "issuer": "query", "tool": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %s is %q, want %q", name, vars[name], typ)
		}
	}
}
