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
			UID, Type      string
			JSONData       plugin.Settings   `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		}
	}
	readYAML(t, "grafana/provisioning/datasources/gpufleet.yaml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != plugin.ID || ds.Datasources[0].UID != "gpufleet" {
		t.Fatalf("provisioned datasources %+v, want one %s with uid gpufleet", ds.Datasources, plugin.ID)
	}
	if a := ds.Datasources[0].JSONData.Address; a != "clickhouse:9000" {
		t.Errorf("provisioned datasource reads %q, want the compose service clickhouse:9000", a)
	}
	// Grafana reads as the read-only user, its password from the environment compose fills from
	// .env; before, it logged in as a "gpufleet" account the users file no longer defines.
	if u, p := ds.Datasources[0].JSONData.Username, ds.Datasources[0].SecureJSONData["password"]; u != "gpufleet_reader" || p != "$GPUFLEET_CH_READER_PASSWORD" {
		t.Errorf("provisioned datasource logs in as %q with password %q, want gpufleet_reader with $GPUFLEET_CH_READER_PASSWORD", u, p)
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

// fleet is a seeded chDB fleet with a few XID events on two of its GPUs, a sequence gap and a batch
// intent, and the datasource over it, as Grafana would have it 30 minutes into a run ending at end.
// prefer is, by dimension, a value with something to show: the node and GPU with the XIDs
// (node-00000's GPU 1), its cluster, its pool, and the job on most of that node's GPUs.
func fleet(t *testing.T) (ds *plugin.Datasource, st store.Store, end time.Time, prefer map[string]string) {
	t.Helper()
	st = testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	end = time.Now().UTC().Truncate(time.Minute)
	if _, err := (seed.Fleet{Seed: 5, Nodes: 8, GPUsPerNode: 4, Clusters: []string{"east", "west"},
		From: end.Add(-30 * time.Minute), To: end, Step: 10 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	uuid := func(node string, gpu int) string {
		r, err := st.Query(ctx, fmt.Sprintf("SELECT any(uuid) FROM %s WHERE node = '%s' AND gpu = %d",
			store.Table(st.Database(), "gpu_samples"), node, gpu))
		if err != nil || len(r.Rows) != 1 || r.Rows[0][0] == "" {
			t.Fatalf("the UUID of %s GPU %d: %v %v", node, gpu, err, r)
		}
		return r.Rows[0][0].(string)
	}
	xidGPU, other := uuid("node-00000", 1), uuid("node-00001", 0)
	ms := func(d time.Duration) int64 { return end.Add(-d).UnixMilli() }
	for _, q := range []string{
		fmt.Sprintf("INSERT INTO %s (time, cluster, node, pool, gpu, uuid, kind, code) VALUES "+
			"(fromUnixTimestamp64Milli(%d), 'east', 'node-00000', '%s', 1, '%s', 'xid', 79), "+
			"(fromUnixTimestamp64Milli(%d), 'east', 'node-00000', '%s', 1, '%s', 'xid', 79), "+
			"(fromUnixTimestamp64Milli(%d), 'west', 'node-00001', '%s', 0, '%s', 'xid', 13)",
			store.Table(st.Database(), "gpu_events"), ms(3*time.Minute), poolOf(t, st, "node-00000"), xidGPU,
			ms(2*time.Minute), poolOf(t, st, "node-00000"), xidGPU, ms(time.Minute), poolOf(t, st, "node-00001"), other),
		fmt.Sprintf("INSERT INTO %s (detected_at, agent_id, topic, partition, offset, expected_seq, seen_seq, missing) VALUES "+
			"(fromUnixTimestamp64Milli(%d), 'node-00002', 'gpufleet.samples', 3, 1200, 41, 44, 3)",
			store.Table(st.Database(), "ingest_gaps"), ms(4*time.Minute)),
		fmt.Sprintf("INSERT INTO %s (group_id, topic, partition, first_offset, last_offset, created_at) VALUES "+
			"('gpufleet-ingest', 'gpufleet.samples', 3, 1100, 1199, fromUnixTimestamp64Milli(%d))",
			store.Table(st.Database(), "ingest_intents"), ms(5*time.Minute)),
	} {
		if err := st.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	r, err := st.Query(ctx, fmt.Sprintf("SELECT job_id FROM %s WHERE node = 'node-00000' AND job_id != '' "+
		"GROUP BY job_id ORDER BY uniqExact(uuid) DESC, job_id LIMIT 1", store.Table(st.Database(), "gpu_samples")))
	if err != nil || len(r.Rows) != 1 {
		t.Fatalf("a job on node-00000: %v %v", err, r)
	}
	prefer = map[string]string{"node": "node-00000", "gpu": xidGPU, "cluster": "east",
		"pool": poolOf(t, st, "node-00000"), "job": r.Rows[0][0].(string)}
	return plugin.New(st, func() time.Time { return end }), st, end, prefer
}

// poolOf is the pool a seeded node reports in.
func poolOf(t *testing.T, st store.Store, node string) string {
	t.Helper()
	r, err := st.Query(context.Background(), fmt.Sprintf("SELECT any(pool) FROM %s WHERE node = '%s'",
		store.Table(st.Database(), "gpu_samples"), node))
	if err != nil || len(r.Rows) != 1 {
		t.Fatalf("the pool of %s: %v %v", node, err, r)
	}
	return r.Rows[0][0].(string)
}

// labels lists a dimension's values through the datasource's resource, as a template variable's
// options are listed.
func labels(t testing.TB, ds *plugin.Datasource, dim string) []string {
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

// reported says whether any GPU of the seeded fleet reported metric (column) at all.
func reported(t *testing.T, st store.Store, metric string) bool {
	t.Helper()
	r, err := st.Query(context.Background(), fmt.Sprintf("SELECT toUInt64(countIf(%s IS NOT NULL)) FROM %s",
		metric, store.Table(st.Database(), "gpu_samples")))
	if err != nil || len(r.Rows) != 1 {
		t.Fatalf("readings of %s: %v %v", metric, err, r)
	}
	return r.Rows[0][0].(uint64) > 0
}

// dashVar is a dashboard's template variable: a dimension's values through the labels resource,
// optionally narrowed by another variable (query.cluster).
type dashVar struct {
	Name       string
	IncludeAll bool
	Query      struct{ Dim, Cluster string }
}

type panel struct {
	ID         int
	Title      string
	Type       string
	Datasource struct{ Type, UID string }
	Targets    []map[string]any
	Panels     []panel // a collapsed row's
}

type dashboard struct {
	file       string
	UID        string
	Title      string
	Schema     int `json:"schemaVersion"`
	Templating struct{ List []dashVar }
	Panels     []panel
	raw        map[string]any
}

// dashboards are the provisioned dashboard files, by file name.
func dashboards(t testing.TB) []dashboard {
	t.Helper()
	files, err := filepath.Glob("grafana/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var out []dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := dashboard{file: filepath.Base(f)}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := json.Unmarshal(b, &d.raw); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, d)
	}
	return out
}

// allPanels is every panel of d, a collapsed row's included, rows themselves left out.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// vars are the variables of a dashboard (by name).
func (d dashboard) vars() map[string]dashVar {
	m := map[string]dashVar{}
	for _, v := range d.Templating.List {
		m[v.Name] = v
	}
	return m
}

// sqlVar finds $name in raw SQL.
func sqlVar(name string) *regexp.Regexp { return regexp.MustCompile(`\$` + name + `\b`) }

// interpolate gives a gpufleet panel query its variables as Grafana's frontend would: a variable at
// All (where all is set, every variable with includeAll) drops the filter on it — sent here as every
// option — and is $__all in raw SQL, which $__conditionalAll reads as "all"; a variable at one value
// is that value, a ClickHouse string literal in raw SQL.
func interpolate(q map[string]any, vars map[string]dashVar, values map[string][]string, all bool, db string) {
	if fs, ok := q["filters"].([]any); ok {
		for _, f := range fs {
			f := f.(map[string]any)
			var vals []string
			for _, v := range f["values"].([]any) {
				if opts, ok := values[strings.TrimPrefix(v.(string), "$")]; ok {
					vals = append(vals, opts...)
				} else {
					vals = append(vals, v.(string))
				}
			}
			f["values"] = vals
		}
	}
	if sql, ok := q["rawSql"].(string); ok {
		for name, v := range vars {
			with := "$__all"
			if !v.IncludeAll || !all {
				with = "'" + values[name][0] + "'"
			}
			sql = sqlVar(name).ReplaceAllLiteralString(sql, with)
		}
		q["rawSql"] = strings.ReplaceAll(sql, "gpufleet.", db+".")
	}
}

// Every query of every gpufleet panel of every provisioned dashboard runs in the backend and draws
// something, twice: its variables at All (where a variable takes one value — a node, a GPU — at a
// value from the seeded fleet), and every variable at one value, so that each filter a variable
// makes reaches ClickHouse (at All, $__conditionalAll drops it). Time-series panels get time series;
// an energy panel gets energy, not power.
func TestProvisionedDashboardQueries(t *testing.T) {
	ds, st, end, prefer := fleet(t)
	dashes := dashboards(t)
	if len(dashes) < 5 {
		t.Fatalf("%d dashboards, want 5 (fleet, node, GPU, jobs, pipeline)", len(dashes))
	}
	for _, d := range dashes {
		vars := d.vars()
		everyOpt, oneOpt := map[string][]string{}, map[string][]string{}
		for _, v := range d.Templating.List {
			opts := labels(t, ds, v.Query.Dim)
			pick := opts[0]
			if slices.Contains(opts, prefer[v.Query.Dim]) {
				pick = prefer[v.Query.Dim]
			}
			everyOpt[v.Name], oneOpt[v.Name] = opts, []string{pick}
			if !v.IncludeAll {
				everyOpt[v.Name] = oneOpt[v.Name]
			}
		}
		for _, p := range d.allPanels() {
			if p.Datasource.UID != "gpufleet" {
				continue
			}
			for _, target := range p.Targets {
				for _, all := range []bool{true, false} {
					if !all && len(vars) == 0 {
						continue
					}
					values, mode := everyOpt, "all"
					if !all {
						values, mode = oneOpt, "one"
					}
					var q map[string]any // a copy: interpolate writes into it
					b, _ := json.Marshal(target)
					if err := json.Unmarshal(b, &q); err != nil {
						t.Fatal(err)
					}
					t.Run(d.file+"/"+p.Title+"/"+q["refId"].(string)+"/"+mode, func(t *testing.T) {
						interpolate(q, vars, values, all, st.Database())
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
						if m, ok := q["metric"].(string); ok && !reported(t, st, m) {
							// A metric no seeded GPU reports (a fan on SXM boards) has no data to draw.
							if f.Rows() != 0 {
								t.Errorf("%s: %d rows of a metric no GPU reports", raw, f.Rows())
							}
							return
						}
						if f.Rows() == 0 || len(f.Fields) == 0 {
							t.Fatalf("%s: an empty frame", raw)
						}
						if (p.Type == "timeseries" || p.Type == "state-timeline") &&
							(f.Meta == nil || f.Meta.Type != data.FrameTypeTimeSeriesWide || len(f.Fields) < 2) {
							t.Errorf("%s panel gets %v with %d fields", p.Type, f.Meta, len(f.Fields))
						}
						if strings.Contains(strings.ToLower(p.Title), "energy") {
							for _, fl := range f.Fields {
								if fl.Config != nil && strings.HasSuffix(fl.Config.Unit, "watt") {
									t.Errorf("an energy panel plots %s (unit %s): power, not energy", fl.Name, fl.Config.Unit)
									break
								}
							}
						}
					})
				}
			}
		}
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
	rules := provisionedRules(t, "gpufleet.yaml")
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

// The dashboards are valid provisioning input and hang together: unique uids and panel ids, the
// schema version of the first, every panel on a provisioned datasource, every gpufleet query honouring
// each variable of its dashboard (directly, or through a variable the other narrows), data links to
// dashboards that exist with variables they have, the GPU detail showing every metric of the
// catalogue, and each Prometheus query naming only metrics gpufleet registers.
func TestDashboardShape(t *testing.T) {
	var provisioned []string
	for _, f := range []string{"gpufleet.yaml", "prometheus.yaml"} {
		var ds struct{ Datasources []struct{ UID string } }
		readYAML(t, "grafana/provisioning/datasources/"+f, &ds)
		for _, d := range ds.Datasources {
			provisioned = append(provisioned, d.UID)
		}
	}
	dashes := dashboards(t)
	byUID := map[string]dashboard{}
	for _, d := range dashes {
		if d.UID == "" || byUID[d.UID].UID != "" {
			t.Errorf("%s: uid %q empty or taken", d.file, d.UID)
		}
		byUID[d.UID] = d
		if d.Schema != 39 {
			t.Errorf("%s: schemaVersion %d, want 39 as the rest", d.file, d.Schema)
		}
	}
	registered := registeredMetrics(t)
	promMetric := regexp.MustCompile(`\bgpufleet_[a-z0-9_]+`)
	for _, d := range dashes {
		vars := d.vars()
		ids := map[int]bool{}
		for _, p := range d.Panels {
			for _, q := range append([]panel{p}, p.Panels...) {
				if ids[q.ID] || q.ID == 0 {
					t.Errorf("%s: panel id %d (%s) missing or repeated", d.file, q.ID, q.Title)
				}
				ids[q.ID] = true
			}
		}
		for _, v := range vars {
			if c := strings.TrimPrefix(v.Query.Cluster, "$"); c != "" && vars[c].Name == "" {
				t.Errorf("%s: variable %s narrows by %s, which the dashboard lacks", d.file, v.Name, v.Query.Cluster)
			}
		}
		for _, p := range d.allPanels() {
			if !slices.Contains(provisioned, p.Datasource.UID) || len(p.Targets) == 0 {
				t.Errorf("%s %q: datasource %q (provisioned: %v), %d queries", d.file, p.Title, p.Datasource.UID, provisioned, len(p.Targets))
			}
			for _, q := range p.Targets {
				if qd, _ := q["datasource"].(map[string]any); qd["uid"] != p.Datasource.UID {
					t.Errorf("%s %q: query %v on datasource %v, the panel on %s", d.file, p.Title, q["refId"], qd["uid"], p.Datasource.UID)
				}
				if p.Datasource.UID == "prometheus" {
					expr, _ := q["expr"].(string)
					names := promMetric.FindAllString(expr, -1)
					if len(names) == 0 {
						t.Errorf("%s %q: %q reads no gpufleet metric", d.file, p.Title, expr)
					}
					for _, n := range names {
						if !registered[histogramBase(n)] {
							t.Errorf("%s %q: %s is not a metric gpufleet registers", d.file, p.Title, n)
						}
					}
					continue
				}
				for name := range vars {
					if !honours(q, vars, name) {
						t.Errorf("%s %q: query %v ignores $%s", d.file, p.Title, q["refId"], name)
					}
				}
			}
		}
		for _, u := range linkURLs(d.raw) {
			m := dashLink.FindStringSubmatch(u)
			if m == nil {
				t.Errorf("%s: link %q is not /d/<uid>/…?…", d.file, u)
				continue
			}
			to, ok := byUID[m[1]]
			if !ok {
				t.Errorf("%s: link %q to dashboard %s, which is not provisioned", d.file, u, m[1])
				continue
			}
			for _, kv := range strings.Split(m[2], "&") {
				if name, ok := strings.CutPrefix(strings.SplitN(kv, "=", 2)[0], "var-"); ok && to.vars()[name].Name == "" {
					t.Errorf("%s: link %q sets var-%s, which %s lacks", d.file, u, name, to.file)
				}
			}
		}
	}
	// The fleet overview opens a GPU's and a node's dashboard from its tables.
	var fromFleet []string
	for _, u := range linkURLs(byUID["gpufleet-fleet"].raw) {
		if m := dashLink.FindStringSubmatch(u); m != nil {
			fromFleet = append(fromFleet, m[1])
		}
	}
	for _, want := range []string{"gpufleet-gpu", "gpufleet-node"} {
		if !slices.Contains(fromFleet, want) {
			t.Errorf("the fleet overview links to %v, not to %s", fromFleet, want)
		}
	}
	// Every metric of the catalogue on the GPU detail dashboard.
	shown := map[string]bool{}
	for _, p := range byUID["gpufleet-gpu"].allPanels() {
		for _, q := range p.Targets {
			if m, ok := q["metric"].(string); ok {
				shown[m] = true
			}
			sql, _ := q["rawSql"].(string)
			for _, m := range gpumetric.All() {
				shown[m.Column] = shown[m.Column] || regexp.MustCompile(`\b`+m.Column+`\b`).MatchString(sql)
			}
		}
	}
	for _, m := range gpumetric.All() {
		if !shown[m.Column] {
			t.Errorf("the GPU detail dashboard does not show %s", m.Column)
		}
	}
}

// dashLink is a link to a dashboard by uid: /d/<uid>[/<slug>]?<query>.
var dashLink = regexp.MustCompile(`^/d/([^/?]+)(?:/[^?]*)?\?(.*)$`)

// linkURLs are the urls of every links list in a dashboard's JSON (dashboard, panel and field links).
func linkURLs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if k == "links" || k == "value" {
				if ls, ok := c.([]any); ok {
					for _, l := range ls {
						if u, ok := l.(map[string]any)["url"].(string); ok {
							out = append(out, u)
						}
					}
				}
			}
			out = append(out, linkURLs(c)...)
		}
	case []any:
		for _, c := range v {
			out = append(out, linkURLs(c)...)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

// honours says whether a gpufleet query reads variable name: a builder filter on it, $name in raw
// SQL, or either on a variable whose options name narrows.
func honours(q map[string]any, vars map[string]dashVar, name string) bool {
	reads := func(n string) bool {
		if sql, ok := q["rawSql"].(string); ok {
			return sqlVar(n).MatchString(sql)
		}
		fs, _ := q["filters"].([]any)
		for _, f := range fs {
			for _, v := range f.(map[string]any)["values"].([]any) {
				if v == "$"+n {
					return true
				}
			}
		}
		return false
	}
	if reads(name) {
		return true
	}
	for _, v := range vars {
		if v.Query.Cluster == "$"+name && reads(v.Name) {
			return true
		}
	}
	return false
}

// histogramBase is the metric a histogram's series belongs to.
func histogramBase(series string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(series, s); ok {
			return b
		}
	}
	return series
}

// registeredMetrics are the gpufleet_* names the Go source (tests aside) spells as string literals:
// the names it registers with Prometheus.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(gpufleet_[a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, dir := range []string{"agent", "ingest", "internal", "query", "cmd"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			for _, m := range lit.FindAllSubmatch(b, -1) {
				out[string(m[1])] = true
			}
			return err
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if !out["gpufleet_ingest_consumer_lag_messages"] {
		t.Fatalf("found %d metric names in the source, not the ingester's lag", len(out))
	}
	return out
}
