package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"go.yaml.in/yaml/v4"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/ssetest"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// The compose stack's Grafana loads the built plugin and the provisioning beside this file.
func TestComposeGrafana(t *testing.T) {
	p := loadProject(t)
	svc := service(t, p, "grafana")
	if v, _ := env(svc, "GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"); !slices.Contains(strings.Split(v, ","), plugin.ID) {
		t.Errorf("grafana: GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS %q does not allow %s", v, plugin.ID)
	}
	mounts := map[string]string{}
	for _, v := range svc.Volumes {
		mounts[v.Target] = v.Source
	}
	root, _ := filepath.Abs(repoRoot)
	for target, source := range map[string]string{
		"/var/lib/grafana/plugins/" + plugin.ID: "plugin/dist",
		"/etc/grafana/provisioning":             "deploy/grafana/provisioning",
		"/var/lib/grafana/dashboards":           "deploy/grafana/dashboards",
	} {
		if got := mounts[target]; filepath.Clean(got) != filepath.Join(root, source) {
			t.Errorf("grafana: %s mounted from %q, want %s", target, got, source)
		}
	}
	if dep, ok := svc.DependsOn["migrate"]; !ok || dep.Condition != "service_completed_successfully" {
		t.Errorf("grafana: starts before the schema exists (depends_on migrate: %+v)", dep)
	}

	var ds struct {
		Datasources []struct {
			UID, Type string
			JSONData  plugin.Settings `yaml:"jsonData"`
		}
	}
	readYAML(t, "grafana/provisioning/datasources/gpufleet.yaml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != plugin.ID || ds.Datasources[0].UID != "gpufleet" {
		t.Fatalf("provisioned datasources %+v, want one %s with uid gpufleet", ds.Datasources, plugin.ID)
	}
	if a := ds.Datasources[0].JSONData.Address; a != "clickhouse:9000" {
		t.Errorf("provisioned datasource reads %q, want the compose service clickhouse:9000", a)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// fleet is a seeded chDB fleet with a few XID events, and the datasource over it, as Grafana would
// have it 30 minutes into a run ending at end.
func fleet(t *testing.T) (*plugin.Datasource, store.Store, time.Time) {
	t.Helper()
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute)
	if _, err := (seed.Fleet{Seed: 5, Nodes: 8, GPUsPerNode: 4, Clusters: []string{"east", "west"},
		From: end.Add(-30 * time.Minute), To: end, Step: 10 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code) VALUES "+
		"(fromUnixTimestamp64Milli(%d), 'east', 'node-00000', 1, 'GPU-x', 'xid', 79), "+
		"(fromUnixTimestamp64Milli(%d), 'east', 'node-00000', 1, 'GPU-x', 'xid', 79), "+
		"(fromUnixTimestamp64Milli(%d), 'west', 'node-00001', 0, 'GPU-y', 'xid', 13)",
		store.Table(st.Database(), "gpu_events"), end.Add(-3*time.Minute).UnixMilli(), end.Add(-2*time.Minute).UnixMilli(),
		end.Add(-time.Minute).UnixMilli())); err != nil {
		t.Fatal(err)
	}
	return plugin.New(st, func() time.Time { return end }), st, end
}

// labels lists a dimension's values through the datasource's resource, as a template variable's
// options are listed.
func labels(t *testing.T, ds *plugin.Datasource, dim string) []string {
	t.Helper()
	var got *backend.CallResourceResponse
	if err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Method: "GET", Path: "labels",
		URL: "/labels?dim=" + dim}, backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
		got = r
		return nil
	})); err != nil || got.Status != 200 {
		t.Fatalf("labels %s: %v %v", dim, err, got)
	}
	var out struct {
		Values    []string
		Truncated bool
	}
	if err := json.Unmarshal(got.Body, &out); err != nil || len(out.Values) == 0 || out.Truncated {
		t.Fatalf("labels %s: %s", dim, got.Body)
	}
	return out.Values
}

// Every panel of the provisioned dashboard, with its variables at All as Grafana's frontend would
// interpolate them, runs in the backend and draws something from a seeded fleet.
func TestProvisionedDashboardQueries(t *testing.T) {
	ds, st, end := fleet(t)
	var dash struct {
		Templating struct {
			List []struct{ Name string }
		}
		Panels []struct {
			Title   string
			Type    string
			Targets []map[string]any
		}
	}
	b, err := os.ReadFile("grafana/dashboards/gpu-fleet.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	all := map[string][]string{}
	for _, v := range dash.Templating.List {
		all[v.Name] = labels(t, ds, v.Name)
	}
	if len(dash.Panels) < 8 || len(all) != 2 {
		t.Fatalf("%d panels, variables %v", len(dash.Panels), all)
	}
	for _, p := range dash.Panels {
		t.Run(p.Title, func(t *testing.T) {
			q := p.Targets[0]
			// All: a filter on a variable takes every option; conditionalAll drops its condition.
			if fs, ok := q["filters"].([]any); ok {
				for _, f := range fs {
					f := f.(map[string]any)
					var vals []string
					for _, v := range f["values"].([]any) {
						name := strings.TrimPrefix(v.(string), "$")
						if opts, ok := all[name]; ok {
							vals = append(vals, opts...)
						} else {
							vals = append(vals, v.(string))
						}
					}
					f["values"] = vals
				}
			}
			if sql, ok := q["rawSql"].(string); ok {
				for name := range all {
					sql = strings.ReplaceAll(sql, "$"+name, "$__all")
				}
				q["rawSql"] = strings.ReplaceAll(sql, "gpufleet.", st.Database()+".")
			}
			raw, _ := json.Marshal(q)
			resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", JSON: raw,
				TimeRange: backend.TimeRange{From: end.Add(-30 * time.Minute), To: end}, Interval: 30 * time.Second, MaxDataPoints: 800}}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.Responses["A"]
			if r.Error != nil || len(r.Frames) == 0 {
				t.Fatalf("%s: %v %v", raw, r.Error, r.Frames)
			}
			f := r.Frames[0]
			if f.Rows() == 0 || len(f.Fields) == 0 {
				t.Fatalf("%s: an empty frame", raw)
			}
			if p.Type == "timeseries" && (f.Meta == nil || f.Meta.Type != data.FrameTypeTimeSeriesWide || len(f.Fields) < 2) {
				t.Errorf("timeseries panel gets %v with %d fields", f.Meta, len(f.Fields))
			}
		})
	}
}

// Every provisioned alert rule, evaluated as Grafana evaluates it — each query through the datasource
// Grafana's instance factory makes, over the rule's relative time range, the frames read by SSE's own
// conversion rules (internal/ssetest) and the rule's expression chain run on them — is Normal or
// NoData on a healthy seeded fleet, and Alerting on exactly the GPUs of its fault once the faults are
// in the data: a GPU at 95 °C, a GPU counting uncorrectable ECC errors, XID 79 on a GPU, a GPU that
// stopped reporting 20 minutes ago.
func TestProvisionedAlertRules(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// Evaluations fall on the rule group's 1 m ticks.
	at := time.Now().UTC().Truncate(time.Minute)
	from, step := at.Add(-30*time.Minute), 10*time.Second
	const nodes, gpus = 4, 4
	healthy := seed.Fleet{Seed: coolSeed(t, nodes, gpus, from, at, step, 85), Nodes: nodes, GPUsPerNode: gpus,
		Clusters: []string{"east", "west"}, From: from, To: at, Step: step}
	if _, err := healthy.Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	// An XID that does not stop jobs (13, graphics engine exception) is part of a healthy fleet's day.
	insertXID(t, st, at.Add(-2*time.Minute), "west", "node-00001", 0, "GPU-y", 13)
	ds := factoryDatasource(t, st)
	rules := provisionedRules(t)
	if len(rules) < 4 {
		t.Fatalf("%d alert rules, want the 4 GPU health rules", len(rules))
	}
	// Instances per rule on the healthy fleet: one per GPU, or a single NoData for the XID rule
	// (its query answers only GPUs with job-stopping XIDs).
	want := map[string]int{"gpufleet-hot-gpu": nodes * gpus, "gpufleet-ecc-uncorrectable": nodes * gpus,
		"gpufleet-xid": 1, "gpufleet-silent-gpu": nodes * gpus}
	for _, r := range rules {
		t.Run("healthy/"+r.Title, func(t *testing.T) {
			checkRuleShape(t, r)
			in := evalRule(ds, st.Database(), r, at)
			for _, i := range in {
				if i.State != ssetest.Normal && i.State != ssetest.StateNoData {
					t.Errorf("%v: %s (%v), want Normal or NoData on a healthy fleet", i.Labels, i.State, i.Err)
				}
			}
			if len(in) != want[r.UID] {
				t.Errorf("%d instances, want %d", len(in), want[r.UID])
			}
		})
	}

	// The faults, each on a node of its own beside the healthy fleet (the others read a cool 60 °C so
	// that a fault trips its own rule only).
	cool := func(t time.Time, g int, m gpumetric.ID, v *float64, c *uint64) {
		if m == gpumetric.TempGPU && v != nil {
			*v = 60
		}
	}
	hot := node{seed: 7, cluster: "east", idx: 90, gpus: 2, fault: func(t time.Time, g int, m gpumetric.ID, v *float64, c *uint64) {
		if m == gpumetric.TempGPU && v != nil {
			*v = 60
			if g == 1 && t.After(at.Add(-8*time.Minute)) {
				*v = 95
			}
		}
	}}
	ecc := node{seed: 7, cluster: "west", idx: 91, gpus: 2, fault: func(t time.Time, g int, m gpumetric.ID, v *float64, c *uint64) {
		cool(t, g, m, v, c)
		if m == gpumetric.ECCDoubleVolatile && c != nil && g == 0 && t.After(at.Add(-5*time.Minute)) {
			*c = 2
		}
	}}
	silent := node{seed: 7, cluster: "east", idx: 92, gpus: 2, fault: cool}
	for _, w := range []struct {
		n        node
		from, to time.Time
	}{{hot, from, at}, {ecc, from, at}, {silent, from, at.Add(-20 * time.Minute)}} {
		if err := w.n.write(ctx, st, w.from, w.to, step); err != nil {
			t.Fatal(err)
		}
	}
	insertXID(t, st, at.Add(-3*time.Minute), "east", "node-00000", 1, "GPU-x", 79)
	insertXID(t, st, at.Add(-2*time.Minute), "east", "node-00000", 1, "GPU-x", 79)
	// The node each rule must alert on, and how many instances it then has.
	faults := map[string]struct {
		node                string
		alerting, instances int
	}{
		"gpufleet-hot-gpu":           {hot.name(), 1, nodes*gpus + 4},
		"gpufleet-ecc-uncorrectable": {ecc.name(), 1, nodes*gpus + 4},
		"gpufleet-xid":               {"node-00000", 1, 1},
		"gpufleet-silent-gpu":        {silent.name(), 2, nodes*gpus + 6},
	}
	for _, r := range rules {
		t.Run("fault/"+r.Title, func(t *testing.T) {
			f, ok := faults[r.UID]
			if !ok {
				t.Fatalf("rule %s has no fault in this test", r.UID)
			}
			in := evalRule(ds, st.Database(), r, at)
			alerting := 0
			for _, i := range in {
				switch {
				case i.State == ssetest.Alerting && i.Labels["node"] == f.node:
					alerting++
					checkSummaryLabels(t, r, i.Labels)
				case i.State == ssetest.Normal: // the other GPUs, the faulty node's healthy one among them
				default:
					t.Errorf("%v: %s (%v) with the fault on %s", i.Labels, i.State, i.Err, f.node)
				}
			}
			if alerting != f.alerting {
				t.Errorf("%d instances alerting on %s, want %d", alerting, f.node, f.alerting)
			}
			if len(in) != f.instances {
				t.Errorf("%d instances, want %d", len(in), f.instances)
			}
		})
	}
}

func insertXID(t *testing.T, st store.Store, at time.Time, cluster, node string, gpu int, uuid string, code int) {
	t.Helper()
	if err := st.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code) VALUES "+
		"(fromUnixTimestamp64Milli(%d), '%s', '%s', %d, '%s', 'xid', %d)",
		store.Table(st.Database(), "gpu_events"), at.UnixMilli(), cluster, node, gpu, uuid, code)); err != nil {
		t.Fatal(err)
	}
}

// checkRuleShape: the rule's condition is one of its entries, each expression reads an entry of the
// rule, and a healthy fleet's "no rows" maps to OK, not to a page.
func checkRuleShape(t *testing.T, r ssetest.Rule) {
	t.Helper()
	refs := map[string]bool{}
	for _, d := range r.Data {
		refs[d.RefID] = true
	}
	if !refs[r.Condition] {
		t.Fatalf("condition %s is not among the rule's queries %v", r.Condition, refs)
	}
	if r.NoDataState != "OK" {
		t.Errorf("noDataState %q: a healthy fleet answers no rows, which must not page", r.NoDataState)
	}
	for _, d := range r.Data {
		if d.DatasourceUID != ssetest.ExprUID {
			continue
		}
		if e, _ := d.Model["expression"].(string); !refs[strings.TrimPrefix(e, "$")] && d.Model["type"] != "math" {
			t.Errorf("expression %s reads %q, not a query of the rule", d.RefID, e)
		}
	}
}

// templateLabel finds the labels an annotation template reads.
var templateLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// checkSummaryLabels: every label the rule's summary names is on its alerting instance.
func checkSummaryLabels(t *testing.T, r ssetest.Rule, l data.Labels) {
	t.Helper()
	for _, m := range templateLabel.FindAllStringSubmatch(r.Annotations["summary"], -1) {
		if _, ok := l[m[1]]; !ok {
			t.Errorf("summary uses $labels.%s; the instance has labels %v", m[1], l)
		}
	}
}
