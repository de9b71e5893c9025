package deploy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/migrate"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

// "GPU stopped reporting" keeps alerting for a GPU silent longer than the rule's one-hour window:
// a node that stopped 3 h ago is still over the threshold, a node reporting now is not.
func TestSilentRuleOutlivesItsWindow(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute)
	for _, f := range []seed.Fleet{
		{Seed: 1, Nodes: 2, GPUsPerNode: 2, Clusters: []string{"live"}, From: end.Add(-5 * time.Hour), To: end},
		{Seed: 2, Nodes: 2, GPUsPerNode: 2, Clusters: []string{"gone"}, From: end.Add(-5 * time.Hour), To: end.Add(-3 * time.Hour)},
	} {
		f.Step = time.Minute
		if _, err := f.Write(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				UID  string
				Data []struct {
					RefID             string                 `yaml:"refId"`
					RelativeTimeRange struct{ From, To int } `yaml:"relativeTimeRange"`
					Model             map[string]any
				}
			}
		}
	}
	readYAML(t, "grafana/provisioning/alerting/gpufleet.yaml", &rules)
	var sql string
	var window time.Duration
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.UID == "gpufleet-silent-gpu" {
				sql, _ = r.Data[0].Model["rawSql"].(string)
				window = time.Duration(r.Data[0].RelativeTimeRange.From) * time.Second
			}
		}
	}
	if sql == "" {
		t.Fatal("no gpufleet-silent-gpu rule")
	}
	ds := plugin.New(st, func() time.Time { return end })
	raw, _ := json.Marshal(map[string]any{"queryType": "sql", "rawSql": strings.ReplaceAll(sql, "gpufleet.", st.Database()+".")})
	resp, _ := ds.QueryData(ctx, &backend.QueryDataRequest{Headers: map[string]string{"FromAlert": "true"},
		Queries: []backend.DataQuery{{RefID: "A", JSON: raw, TimeRange: backend.TimeRange{From: end.Add(-window), To: end}}}})
	r := resp.Responses["A"]
	if r.Error != nil || len(r.Frames) != 1 {
		t.Fatalf("rule query: %v", r.Error)
	}
	f := r.Frames[0]
	if f.Rows() != 8 {
		t.Fatalf("%d GPUs answered, want 8 (4 live, 4 silent for 3 h)", f.Rows())
	}
	for i := range f.Rows() {
		cluster, _ := f.Fields[0].ConcreteAt(i)
		v, _ := f.Fields[3].ConcreteAt(i)
		silent := v.(float64)
		switch cluster {
		case "live":
			if silent > 600 {
				t.Errorf("a live GPU reads silent for %v s", silent)
			}
		case "gone":
			if silent <= 600 || silent > 3*3600 {
				t.Errorf("a GPU silent for 3 h reads %v s, want over the 600 s threshold and at most 3 h", silent)
			}
		}
	}
}
