package plugin_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

// A panel's query JSON is whatever a dashboard holds (hand-edited, imported, from an older plugin):
// each query answers frames, a 400 (the query is wrong) or a 502 (the store failed), never a
// panic, and a bad query next to a good one leaves the good one answered. Raw SQL never writes.
// The store is the real engine over a small fleet, opened once for the whole run.
func FuzzQueryJSON(f *testing.F) {
	st := testenv.CHDB(f)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		f.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute) // the seed writer checks times against the wall clock
	const gpus, steps = 2, 10
	if _, err := (seed.Fleet{Seed: 5, Nodes: 1, GPUsPerNode: gpus, Clusters: []string{"east"},
		From: end.Add(-steps * 30 * time.Second), To: end, Step: 30 * time.Second}).Write(ctx, st); err != nil {
		f.Fatal(err)
	}
	ds := plugin.New(st, func() time.Time { return end })
	countSQL := "SELECT count() FROM " + st.Database() + ".gpu_samples"

	for _, q := range []string{
		`{"metric":"gpu_util","agg":"avg","groupBy":["cluster"]}`,
		`{"queryType":"stat","metric":"power_w","agg":"max"}`,
		`{"queryType":"top","metric":"temp_gpu_c","agg":"max","limit":3,"filters":[{"dim":"cluster","values":["east"]}]}`,
		`{"queryType":"sql","rawSql":"SELECT $__timeGroup(time, $__interval) AS t, avg(gpu_util) FROM gpu_samples WHERE $__timeFilter(time) GROUP BY t ORDER BY t"}`,
		`{"queryType":"annotations","kinds":["xid"]}`,
		`{"metric":"energy_mj","agg":"rate","alias":"{{node}}"}`,
		`{"metric":"gpu_util","filters":[{"dim":"node","values":[]}]}`,
		`{"metric":"gpu_util","filters":[{"dim":"datacenter","values":["x"]}]}`,
		`{"queryType":"top","metric":"gpu_util","limit":-1,"order":"sideways"}`,
		`{"queryType":"sql","rawSql":"DROP TABLE gpu_samples"}`,
		`{"queryType":"sql","rawSql":"SELECT 1; DROP TABLE gpu_samples"}`,
		`{"queryType":"nope"}`,
		`{"metric":1}`,
		`{"groupBy":"node"}`,
		`null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(q), int64(steps*30), int64(30_000), int64(1000))
	}
	f.Add([]byte(`{"metric":"gpu_util"}`), int64(-3600), int64(0), int64(0))
	f.Add([]byte(`{"metric":"gpu_util"}`), int64(400*24*3600), int64(1), int64(-1))
	f.Fuzz(func(t *testing.T, raw []byte, spanSec, intervalMs, maxPoints int64) {
		from := end.Add(-time.Duration(spanSec) * time.Second)
		good := backend.DataQuery{RefID: "good", JSON: []byte(`{"metric":"gpu_util"}`), Interval: 30 * time.Second,
			MaxDataPoints: 100, TimeRange: backend.TimeRange{From: end.Add(-5 * time.Minute), To: end}}
		fuzzed := backend.DataQuery{RefID: "fuzzed", JSON: raw, Interval: time.Duration(intervalMs) * time.Millisecond,
			MaxDataPoints: maxPoints, TimeRange: backend.TimeRange{From: from, To: end}}
		resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{fuzzed, good}})
		if err != nil {
			t.Fatalf("QueryData: %v", err)
		}
		if r := resp.Responses["good"]; r.Error != nil {
			t.Fatalf("the good query failed beside %s: %v", raw, r.Error)
		}
		r, ok := resp.Responses["fuzzed"]
		if !ok {
			t.Fatalf("%s: no response", raw)
		}
		if r.Error == nil {
			if r.Status != 0 && r.Status != backend.StatusOK {
				t.Fatalf("%s: status %d without an error", raw, r.Status)
			}
		} else if r.Status != backend.StatusBadRequest && r.Status != backend.StatusBadGateway {
			t.Fatalf("%s: status %d: %v", raw, r.Status, r.Error)
		}
		if bytes.Contains(bytes.ToLower(raw), []byte("sql")) {
			res, err := st.Query(ctx, countSQL)
			if err != nil || res.Rows[0][0].(uint64) != gpus*steps {
				t.Fatalf("%s changed gpu_samples: %v %v", raw, res, err)
			}
		}
	})
}
