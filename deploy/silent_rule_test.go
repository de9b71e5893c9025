package deploy_test

import (
	"context"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/ssetest"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// "GPU stopped reporting", evaluated as Grafana does (ssetest): Alerting for a GPU silent 3 h, longer
// than the rule's one-hour window, and for one silent 20 minutes whose last samples share the current
// hour's bucket of the hourly rollup (the rule took that bucket's end as "last seen" and stayed Normal
// until the next hour); Normal for a GPU reporting now. The evaluation falls at minute 58 of an hour so
// that the 20-minute silence begins inside it.
func TestSilentRuleOutlivesItsWindow(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Minute)
	want := map[string]ssetest.State{"live": ssetest.Normal, "gone": ssetest.Alerting, "quiet": ssetest.Alerting}
	for _, f := range []seed.Fleet{
		{Seed: 1, Clusters: []string{"live"}, From: at.Add(-5 * time.Hour), To: at},
		{Seed: 2, Clusters: []string{"gone"}, From: at.Add(-5 * time.Hour), To: at.Add(-3 * time.Hour)},
		{Seed: 3, Clusters: []string{"quiet"}, From: at.Add(-5 * time.Hour), To: at.Add(-20 * time.Minute)},
	} {
		f.Nodes, f.GPUsPerNode, f.Step = 2, 2, time.Minute
		if _, err := f.Write(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	var rule *ssetest.Rule
	for _, r := range provisionedRules(t, "gpufleet.yaml") {
		if r.UID == "gpufleet-silent-gpu" {
			rule = &r
		}
	}
	if rule == nil {
		t.Fatal("no gpufleet-silent-gpu rule")
	}
	in := evalRule(factoryDatasource(t, st), st.Database(), *rule, at)
	if len(in) != 12 {
		t.Fatalf("%d instances %+v, want 12 (4 live, 4 silent for 3 h, 4 for 20 minutes)", len(in), in)
	}
	for _, i := range in {
		if w := want[i.Labels["cluster"]]; i.State != w {
			v := "nil"
			if i.Value != nil {
				v = "set"
			}
			t.Errorf("%v: %s (value %s, %v), want %s", i.Labels, i.State, v, i.Err, w)
		}
	}
}
