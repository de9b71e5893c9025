package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/ssetest"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

// provisionedRules are the alert rules of a file of deploy/grafana/provisioning/alerting (gpufleet.yaml:
// the GPU rules; pipeline.yaml: the pipeline's).
func provisionedRules(t *testing.T, file string) []ssetest.Rule {
	t.Helper()
	var rules struct {
		Groups []struct {
			Name  string
			Rules []ssetest.Rule
		}
	}
	readYAML(t, "grafana/provisioning/alerting/"+file, &rules)
	var out []ssetest.Rule
	for _, g := range rules.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// factoryDatasource is the datasource as Grafana makes it: its instance factory on jsonData naming the
// chDB directory and the test's database (a read-only session, as in production).
func factoryDatasource(t *testing.T, st store.Store) *plugin.Datasource {
	t.Helper()
	jsonData, _ := json.Marshal(map[string]any{"chdbPath": testenv.DataDir(t), "database": st.Database()})
	inst, err := plugin.NewDatasource(context.Background(), backend.DataSourceInstanceSettings{UID: "gpufleet", JSONData: jsonData})
	if err != nil {
		t.Fatal(err)
	}
	ds := inst.(*plugin.Datasource)
	t.Cleanup(ds.Dispose)
	return ds
}

// evalRule evaluates a rule at the instant at as Grafana's scheduler does: each datasource query
// over its relative time range, with alerting's headers and its defaults (intervalMs 1000,
// maxDataPoints 43200), the frames through SSE's conversion and the rule's expressions.
func evalRule(ds *plugin.Datasource, db string, r ssetest.Rule, at time.Time) []ssetest.Instance {
	return ssetest.Evaluate(r, func(q ssetest.Query) (data.Frames, error) {
		if q.DatasourceUID != "gpufleet" {
			return nil, fmt.Errorf("query %s reads datasource %q", q.RefID, q.DatasourceUID)
		}
		m := map[string]any{}
		for k, v := range q.Model {
			m[k] = v
		}
		if sql, ok := m["rawSql"].(string); ok { // the provisioned SQL names the production database
			m["rawSql"] = strings.ReplaceAll(sql, "gpufleet.", db+".")
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{
			Headers: map[string]string{"FromAlert": "true"},
			Queries: []backend.DataQuery{{RefID: q.RefID, JSON: raw, Interval: time.Second, MaxDataPoints: 43200,
				TimeRange: backend.TimeRange{From: at.Add(-time.Duration(q.RelativeTimeRange.From) * time.Second),
					To: at.Add(-time.Duration(q.RelativeTimeRange.To) * time.Second)}}}})
		if err != nil {
			return nil, err
		}
		res, ok := resp.Responses[q.RefID]
		if !ok {
			return nil, fmt.Errorf("no response for %s", q.RefID)
		}
		if res.Error != nil {
			return nil, res.Error
		}
		return res.Frames, nil
	})
}

// node is one simulated host written through ingest's column builder, each reading open to change
// (a fault) before it is encoded.
type node struct {
	seed    uint64
	cluster string
	idx     int
	gpus    int
	// fault changes GPU g's reading of metric m at t: a gauge in *v, a counter in *c.
	fault func(t time.Time, g int, m gpumetric.ID, v *float64, c *uint64)
}

func (n node) name() string { return fmt.Sprintf("node-%05d", n.idx) }

// write inserts one sample of every GPU of the node at from, from+step, … before to.
func (n node) write(ctx context.Context, st store.Store, from, to time.Time, step time.Duration) error {
	sn := sim.NewNode(n.seed, n.cluster, n.idx, n.gpus)
	b := ingest.NewSampleBuilder()
	var dec wire.SampleDecoder
	for t, s := from, uint64(1); t.Before(to); t, s = t.Add(step), s+1 {
		batch := &wirepb.SampleBatch{AgentId: sn.Name, Seq: s, Cluster: sn.Cluster, Node: sn.Name}
		batch.Rack, batch.Pool = sn.Placement()
		sn.Sample(t, batch, nil)
		if n.fault != nil {
			for _, c := range batch.Metrics {
				for g := range n.gpus {
					var v *float64
					var cnt *uint64
					if len(c.Values) > g {
						v = &c.Values[g]
					}
					if len(c.Counts) > g {
						cnt = &c.Counts[g]
					}
					n.fault(t, g, gpumetric.ID(c.Metric), v, cnt)
				}
			}
		}
		enc, err := wire.EncodeSamples(batch)
		if err != nil {
			return err
		}
		sb, err := dec.Decode(enc)
		if err != nil {
			return err
		}
		if err := b.Add(sb, time.Now()); err != nil {
			return err
		}
	}
	return st.Insert(ctx, "gpu_samples", b.Block(), "")
}

// coolSeed is the first simulator seed from 1 whose fleet of nodes×gpus never reads above maxC on any
// GPU between from and to: the simulator runs a GPU at full load with the highest offset at 85–86 °C,
// over the hot-GPU rule's threshold, and a healthy fleet is one no rule alerts on.
func coolSeed(t *testing.T, nodes, gpus int, from, to time.Time, step time.Duration, maxC float64) uint64 {
	t.Helper()
	for seed := uint64(1); seed <= 500; seed++ {
		hot := false
		for i := 0; i < nodes && !hot; i++ {
			sn := sim.NewNode(seed, "", i, gpus)
			for ts := from; ts.Before(to) && !hot; ts = ts.Add(step) {
				batch := &wirepb.SampleBatch{}
				sn.Sample(ts, batch, nil)
				for _, c := range batch.Metrics {
					if gpumetric.ID(c.Metric) == gpumetric.TempGPU {
						for _, v := range c.Values {
							hot = hot || v > maxC
						}
					}
				}
			}
		}
		if !hot {
			return seed
		}
	}
	t.Fatalf("no seed in 1..500 keeps %d×%d simulated GPUs at or below %v °C", nodes, gpus, maxC)
	return 0
}

// The pipeline's alert rules (pipeline.yaml). Those on ClickHouse, evaluated as Grafana does, are
// Normal or NoData on a healthy fleet and Alerting on exactly their fault: an agent silent for 20
// minutes, an agent with batches missing 5 minutes ago (a gap 40 minutes old is outside the window).
// Those on Prometheus cannot run here (no Prometheus): each is checked for shape, for the provisioned
// Prometheus datasource and for naming only metrics gpufleet registers.
func TestPipelineAlertRules(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Minute)
	from, step := at.Add(-30*time.Minute), 10*time.Second
	if _, err := (seed.Fleet{Seed: 3, Nodes: 4, GPUsPerNode: 2, Clusters: []string{"east"}, From: from, To: at, Step: step}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	gap := func(agent string, ago time.Duration, missing int) {
		if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (detected_at, agent_id, topic, partition, offset, expected_seq, seen_seq, missing) "+
			"VALUES (fromUnixTimestamp64Milli(%d), '%s', 'gpufleet.samples', 0, 10, 5, %d, %d)",
			store.Table(st.Database(), "ingest_gaps"), at.Add(-ago).UnixMilli(), agent, 5+missing, missing)); err != nil {
			t.Fatal(err)
		}
	}
	gap("node-00002", 40*time.Minute, 7) // outside every window: a healthy fleet had a gap once
	ds := factoryDatasource(t, st)
	rules := provisionedRules(t, "pipeline.yaml")
	registered := registeredMetrics(t)
	promMetric := regexp.MustCompile(`\bgpufleet_[a-z0-9_]+`)
	onSQL := map[string]bool{}
	for _, r := range rules {
		checkRuleShape(t, r)
		for _, d := range r.Data {
			switch d.DatasourceUID {
			case "gpufleet":
				onSQL[r.UID] = true
			case "prometheus":
				expr, _ := d.Model["expr"].(string)
				names := promMetric.FindAllString(expr, -1)
				if len(names) == 0 || d.RelativeTimeRange.From == 0 {
					t.Errorf("%s: query %s %q over %+v reads no gpufleet metric or no range", r.UID, d.RefID, expr, d.RelativeTimeRange)
				}
				for _, n := range names {
					if !registered[histogramBase(n)] {
						t.Errorf("%s: %s is not a metric gpufleet registers", r.UID, n)
					}
				}
			case ssetest.ExprUID:
			default:
				t.Errorf("%s: query %s on datasource %q, not a provisioned one", r.UID, d.RefID, d.DatasourceUID)
			}
		}
	}
	for _, uid := range []string{"gpufleet-ingest-lag", "gpufleet-dlq-growing", "gpufleet-agent-silent"} {
		if !slices.ContainsFunc(rules, func(r ssetest.Rule) bool { return r.UID == uid }) {
			t.Errorf("no rule %s", uid)
		}
	}
	// Instances on the healthy fleet: one per agent, or a single NoData (no gaps in the window).
	healthy := map[string]int{"gpufleet-agent-silent": 4, "gpufleet-sequence-gaps": 1}
	faults := map[string]struct {
		agent               string
		alerting, instances int
	}{"gpufleet-agent-silent": {"node-00093", 1, 5}, "gpufleet-sequence-gaps": {"node-00001", 1, 1}}
	for _, r := range rules {
		if !onSQL[r.UID] {
			continue
		}
		t.Run("healthy/"+r.Title, func(t *testing.T) {
			in := evalRule(ds, st.Database(), r, at)
			for _, i := range in {
				if i.State != ssetest.Normal && i.State != ssetest.StateNoData {
					t.Errorf("%v: %s (%v), want Normal or NoData on a healthy pipeline", i.Labels, i.State, i.Err)
				}
			}
			if len(in) != healthy[r.UID] {
				t.Errorf("%d instances, want %d", len(in), healthy[r.UID])
			}
		})
	}
	if err := (node{seed: 3, cluster: "east", idx: 93, gpus: 2}).write(ctx, st, from, at.Add(-20*time.Minute), step); err != nil {
		t.Fatal(err)
	}
	gap("node-00001", 5*time.Minute, 3)
	for _, r := range rules {
		if !onSQL[r.UID] {
			continue
		}
		t.Run("fault/"+r.Title, func(t *testing.T) {
			f, ok := faults[r.UID]
			if !ok {
				t.Fatalf("rule %s has no fault in this test", r.UID)
			}
			in := evalRule(ds, st.Database(), r, at)
			alerting := 0
			for _, i := range in {
				switch {
				case i.State == ssetest.Alerting && i.Labels["agent_id"] == f.agent:
					alerting++
					checkSummaryLabels(t, r, i.Labels)
				case i.State == ssetest.Normal:
				default:
					t.Errorf("%v: %s (%v) with the fault on %s", i.Labels, i.State, i.Err, f.agent)
				}
			}
			if alerting != f.alerting || len(in) != f.instances {
				t.Errorf("%d instances, %d alerting on %s; want %d, %d", len(in), alerting, f.agent, f.instances, f.alerting)
			}
		})
	}
}
