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

	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/migrate"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/store"
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

// Every provisioned alert rule is well formed (its condition is one of its queries, its threshold
// reads a query), and its datasource query runs in the backend alone and answers numbers labelled
// the way the annotations expect — or nothing, which the rules map to OK.
func TestProvisionedAlertRules(t *testing.T) {
	ds, st, end := fleet(t)
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				UID, Title, Condition string
				NoDataState           string `yaml:"noDataState"`
				Annotations           map[string]string
				Data                  []struct {
					RefID             string                 `yaml:"refId"`
					DatasourceUID     string                 `yaml:"datasourceUid"`
					RelativeTimeRange struct{ From, To int } `yaml:"relativeTimeRange"`
					Model             map[string]any
				}
			}
		}
	}
	readYAML(t, "grafana/provisioning/alerting/gpufleet.yaml", &rules)
	// How many series each rule's query answers on the seeded fleet (8 nodes × 4 GPUs, two XID 79 on
	// one GPU and an XID 13, which does not stop jobs); the simulator's uncorrectable counts stay 0.
	series := map[string]int{"gpufleet-hot-gpu": 32, "gpufleet-ecc-uncorrectable": 32, "gpufleet-xid": 1, "gpufleet-silent-gpu": 32}
	var n int
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			t.Run(r.Title, func(t *testing.T) {
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
					if d.DatasourceUID == "__expr__" {
						if e, _ := d.Model["expression"].(string); !refs[e] {
							t.Errorf("expression %s reads %q, not a query of the rule", d.RefID, e)
						}
						continue
					}
					if d.DatasourceUID != "gpufleet" {
						t.Fatalf("query %s reads datasource %q", d.RefID, d.DatasourceUID)
					}
					q := d.Model
					if sql, ok := q["rawSql"].(string); ok {
						q["rawSql"] = strings.ReplaceAll(sql, "gpufleet.", st.Database()+".")
					}
					raw, _ := json.Marshal(q)
					resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{
						Headers: map[string]string{"FromAlert": "true"},
						Queries: []backend.DataQuery{{RefID: d.RefID, JSON: raw, TimeRange: backend.TimeRange{
							From: end.Add(-time.Duration(d.RelativeTimeRange.From) * time.Second),
							To:   end.Add(-time.Duration(d.RelativeTimeRange.To) * time.Second)}, Interval: time.Minute, MaxDataPoints: 100}}})
					if err != nil {
						t.Fatal(err)
					}
					res := resp.Responses[d.RefID]
					if res.Error != nil || len(res.Frames) != 1 {
						t.Fatalf("%s: %v %v", raw, res.Error, res.Frames)
					}
					if got := checkAlertFrame(t, res.Frames[0], r.Annotations["summary"]); got != series[r.UID] {
						t.Errorf("%d series, want %d", got, series[r.UID])
					}
				}
			})
		}
	}
	if n < 4 {
		t.Errorf("%d alert rules, want the 4 GPU health rules", n)
	}
}

// templateLabel finds the labels an annotation template reads.
var templateLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// checkAlertFrame accepts what Grafana's alerting reads as one number per series: numeric wide
// (a labelled field per series) or numeric long (string columns label each row's number), or no
// numbers at all (no data). Every label the summary names must be there. It returns the series.
func checkAlertFrame(t *testing.T, f *data.Frame, summary string) int {
	t.Helper()
	var labelKeys []string
	n := 0
	switch {
	case f.Rows() == 0 || len(f.Fields) == 0:
		return 0
	case f.Meta != nil && f.Meta.Type == data.FrameTypeNumericWide:
		n = len(f.Fields)
		for _, fl := range f.Fields {
			if !fl.Type().Numeric() {
				t.Fatalf("numeric wide frame with a %s field", fl.Type())
			}
			if _, ok := fl.ConcreteAt(0); !ok {
				t.Errorf("series %v has no value", fl.Labels)
			}
		}
		for k := range f.Fields[0].Labels {
			labelKeys = append(labelKeys, k)
		}
	case f.Meta != nil && f.Meta.Type == data.FrameTypeNumericLong:
		n = f.Rows()
		for _, fl := range f.Fields {
			if !fl.Type().Numeric() {
				labelKeys = append(labelKeys, fl.Name)
			}
		}
	default:
		t.Fatalf("frame type %v is not a numeric frame alerting reads", f.Meta)
	}
	for _, m := range templateLabel.FindAllStringSubmatch(summary, -1) {
		if !slices.Contains(labelKeys, m[1]) {
			t.Errorf("summary uses $labels.%s; the numbers carry labels %v", m[1], labelKeys)
		}
	}
	return n
}
