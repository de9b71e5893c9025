package query_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// powerReading is one gpu_samples row of the power tests; a MIG instance's has parent set and no
// power (as the agent writes them).
type powerReading struct {
	at                  time.Time
	cluster, node, uuid string
	parent              string
	gpu                 uint8
	w                   float32
	null                bool
	interval            uint32 // ms; 0 as from an agent older than interval_ms
}

func powerBlock(rs []powerReading) *store.Block {
	tm := &store.ColDateTime64{ColName: "time"}
	cluster, node, uuid, parent, model := &store.ColLowCardString{ColName: "cluster"}, &store.ColLowCardString{ColName: "node"},
		&store.ColLowCardString{ColName: "uuid"}, &store.ColLowCardString{ColName: "parent_uuid"}, &store.ColLowCardString{ColName: "model"}
	gpu := &store.ColUInt8{ColName: "gpu"}
	power := &store.ColNullFloat32{ColName: "power_w"}
	interval := &store.ColUInt32{ColName: "interval_ms"}
	for _, r := range rs {
		interval.V = append(interval.V, r.interval)
		tm.V = append(tm.V, r.at.UnixMilli())
		cluster.Append(r.cluster)
		node.Append(r.node)
		uuid.Append(r.uuid)
		parent.Append(r.parent)
		model.Append("H100")
		gpu.V = append(gpu.V, r.gpu)
		power.Append(r.w, r.null)
	}
	return &store.Block{Columns: []store.Column{tm, cluster, node, gpu, uuid, parent, model, power, interval}}
}

// insertSplit inserts rs (in time order) in blocks cut every cut, from start: blocks that end
// inside a second, so that a GPU's readings of one second reach the view in two inserts.
func insertSplit(t *testing.T, st store.Store, rs []powerReading, start time.Time, cut time.Duration) {
	t.Helper()
	slices.SortStableFunc(rs, func(a, b powerReading) int { return a.at.Compare(b.at) })
	for i := 0; i < len(rs); {
		end := start.Add(cut * time.Duration(int(rs[i].at.Sub(start)/cut)+1))
		j := i
		for j < len(rs) && rs[j].at.Before(end) {
			j++
		}
		if err := st.Insert(context.Background(), schema.GPUSamples, powerBlock(rs[i:j]), fmt.Sprintf("power/%d-%d", i, j)); err != nil {
			t.Fatal(err)
		}
		i = j
	}
}

// rawTotals is the definition over gpu_samples, in SQL of its own: per cluster and second, each
// GPU's mean reading, summed over the GPUs.
func rawTotals(t *testing.T, st store.Store) map[string]map[int64]float64 {
	t.Helper()
	r, err := st.Query(context.Background(), "SELECT cluster, toUnixTimestamp(s), sum(m) FROM (SELECT cluster, uuid, toStartOfSecond(time) AS s, avg(power_w) AS m FROM "+
		store.Table(st.Database(), schema.GPUSamples)+" WHERE power_w IS NOT NULL GROUP BY cluster, uuid, s) GROUP BY cluster, s")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[int64]float64{}
	for _, row := range r.Rows {
		c := row[0].(string)
		if out[c] == nil {
			out[c] = map[int64]float64{}
		}
		out[c][int64(toF(row[1]))] = toF(row[2])
	}
	return out
}

func toF(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case uint64:
		return float64(x)
	case uint32:
		return float64(x)
	case int64:
		return float64(x)
	}
	panic(fmt.Sprintf("%T", v))
}

func powerStore(t *testing.T) store.Store {
	t.Helper()
	st := testenv.CHDB(t)
	if _, err := migrate.Apply(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	return st
}

// The rollup's per-second totals are the raw rows' — each GPU's mean reading in the second, summed
// over the cluster's GPUs — at 1 Hz (one reading a GPU a second) and at 10 Hz (ten, each second's
// split across two inserts), with a MIG instance's row (no power) beside its GPU's; and a step of
// several seconds takes the mean, peak or lowest of its seconds' totals.
func TestFleetPowerEqualsRaw(t *testing.T) {
	st := powerStore(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	const seconds = 20
	var rs []powerReading
	for s := range seconds {
		sec := start.Add(time.Duration(s) * time.Second)
		for g := range 3 { // c1: 1 Hz, 3 GPUs (the third's agent older than interval_ms), and a MIG instance of GPU 0
			rs = append(rs, powerReading{at: sec.Add(300 * time.Millisecond), cluster: "c1", node: "n1", uuid: fmt.Sprintf("GPU-1-%d", g),
				gpu: uint8(g), w: float32(200 + 50*g + 7*s + (s*g)%5), interval: uint32(1000 * (1 - g/2))})
		}
		rs = append(rs, powerReading{at: sec.Add(300 * time.Millisecond), cluster: "c1", node: "n1", uuid: "MIG-1-0-0", parent: "GPU-1-0", gpu: 128, null: true, interval: 1000})
		for g := range 2 { // c2: 10 Hz, 2 GPUs on two nodes
			for i := range 10 {
				rs = append(rs, powerReading{at: sec.Add(time.Duration(50+100*i) * time.Millisecond), cluster: "c2", node: fmt.Sprintf("n2-%d", g),
					uuid: fmt.Sprintf("GPU-2-%d", g), w: float32(300 + 100*g + 11*s + 3*i*(g+1) + (i*s)%7), interval: 100})
			}
		}
	}
	insertSplit(t, st, rs, start, 1500*time.Millisecond)

	raw := rawTotals(t, st)
	if len(raw["c1"]) != seconds || len(raw["c2"]) != seconds {
		t.Fatalf("raw totals: %d and %d seconds, want %d each", len(raw["c1"]), len(raw["c2"]), seconds)
	}
	for _, c := range []struct {
		step time.Duration
		agg  query.Agg
	}{{time.Second, query.Avg}, {5 * time.Second, query.Avg}, {5 * time.Second, query.Max}, {5 * time.Second, query.Min}} {
		for _, source := range []query.Source{query.SourceAuto, query.SourceRaw} {
			t.Run(fmt.Sprintf("%s/%s/%s", c.step, c.agg, cmpOr(string(source), "rollup")), func(t *testing.T) {
				got, err := query.FleetPower(ctx, st, &query.PowerQuery{From: start, To: start.Add(seconds * time.Second), Step: c.step, Agg: c.agg, Source: source})
				if err != nil {
					t.Fatal(err)
				}
				want := schema.ClusterPower1s
				if source == query.SourceRaw {
					want = schema.GPUSamples
				}
				if got.Table != want {
					t.Errorf("read %s, want %s", got.Table, want)
				}
				if len(got.Series) != 2 {
					t.Fatalf("%d series, want c1 and c2: %+v", len(got.Series), got.Series)
				}
				for _, s := range got.Series {
					cl := s.Labels["cluster"]
					if len(s.Points) != int(seconds*time.Second/c.step) {
						t.Fatalf("%s: %d points, want %d", cl, len(s.Points), seconds*time.Second/c.step)
					}
					for _, p := range s.Points {
						var secs []float64
						for u := p.T; u.Before(p.T.Add(c.step)); u = u.Add(time.Second) {
							secs = append(secs, raw[cl][u.Unix()])
						}
						want := aggOf(c.agg, secs)
						if p.Value == nil || math.Abs(*p.Value-want) > 1e-6*want {
							t.Errorf("%s at %s: %v W, raw rows say %v", cl, p.T.Format(time.TimeOnly), deref(p.Value), want)
						}
					}
				}
			})
		}
	}
}

func aggOf(agg query.Agg, v []float64) float64 {
	switch agg {
	case query.Max:
		return slices.Max(v)
	case query.Min:
		return slices.Min(v)
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Each reading stands for its share of the second (schema.PowerTotal), so GPUs at different rates
// in one cluster add up as the raw rows do: a GPU at 10 Hz drawing 700 W beside one at 1 Hz drawing
// 100 W make 800 W (0024's mean × GPUs made (10 × 700 + 100) / 11 × 2). What the rollup cannot know
// it gets wrong where the raw rows do not: a 10 Hz agent older than interval_ms counts each reading
// as a second (7,000 W), and a 1 Hz GPU whose two ticks fell in one second counts both; the raw
// source, and a filter on a label the rollup lacks, answer 700 and 350 there.
func TestFleetPowerMixedRates(t *testing.T) {
	st := powerStore(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Minute)
	var rs []powerReading
	for i := range 10 {
		at := start.Add(time.Duration(100*i) * time.Millisecond)
		rs = append(rs, powerReading{at: at, cluster: "c", node: "fast", uuid: "GPU-fast", w: 700, interval: 100},
			powerReading{at: at.Add(time.Minute), cluster: "old", node: "fast", uuid: "GPU-old", w: 700})
	}
	rs = append(rs, powerReading{at: start.Add(500 * time.Millisecond), cluster: "c", node: "slow", uuid: "GPU-slow", w: 100, interval: 1000},
		powerReading{at: start.Add(2*time.Minute + 1*time.Millisecond), cluster: "jitter", node: "j", uuid: "GPU-j", w: 200, interval: 1000},
		powerReading{at: start.Add(2*time.Minute + 999*time.Millisecond), cluster: "jitter", node: "j", uuid: "GPU-j", w: 300, interval: 1000},
		powerReading{at: start.Add(2*time.Minute + 500*time.Millisecond), cluster: "jitter", node: "k", uuid: "GPU-k", w: 100, interval: 1000})
	insertSplit(t, st, rs, start, time.Minute)
	for _, c := range []struct {
		q     query.PowerQuery
		at    time.Duration
		want  float64
		table string
	}{
		{query.PowerQuery{}, 0, 800, schema.ClusterPower1s},
		{query.PowerQuery{Source: query.SourceRaw}, 0, 800, schema.GPUSamples},
		{query.PowerQuery{Filters: []query.Filter{{Dim: query.Node, Values: []string{"fast", "slow"}}}}, 0, 800, schema.GPUSamples},
		{query.PowerQuery{Filters: []query.Filter{{Dim: query.Node, Values: []string{"slow"}}}}, 0, 100, schema.GPUSamples},
		{query.PowerQuery{Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"old"}}}}, time.Minute, 7000, schema.ClusterPower1s},
		{query.PowerQuery{Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"old"}}}, Source: query.SourceRaw}, time.Minute, 700, schema.GPUSamples},
		{query.PowerQuery{Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"jitter"}}}}, 2 * time.Minute, 600, schema.ClusterPower1s},
		{query.PowerQuery{Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"jitter"}}}, Source: query.SourceRaw}, 2 * time.Minute, 350, schema.GPUSamples},
	} {
		q := c.q
		q.From, q.To = start.Add(c.at), start.Add(c.at+time.Second)
		got, err := query.FleetPower(ctx, st, &q)
		if err != nil {
			t.Fatal(err)
		}
		if got.Table != c.table || len(got.Series) != 1 || len(got.Series[0].Points) != 1 || math.Abs(*got.Series[0].Points[0].Value-c.want) > 1e-6 {
			t.Errorf("%+v: %s %+v, want %v W from %s", c.q, got.Table, got.Series, c.want, c.table)
		}
	}
}

// Parameters the query cannot answer are ErrInvalid naming the field, before anything runs; a
// cluster value that is odd but could be a label (quotes, SQL) is bound, matches nothing and
// answers no series.
func TestFleetPowerRefuses(t *testing.T) {
	st := powerStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	hour := func(q query.PowerQuery) *query.PowerQuery {
		if q.From.IsZero() && q.To.IsZero() {
			q.From, q.To = now.Add(-time.Hour), now
		}
		return &q
	}
	cluster := func(vs ...string) []query.Filter { return []query.Filter{{Dim: query.Cluster, Values: vs}} }
	for _, c := range []struct {
		name string
		q    *query.PowerQuery
		want string
	}{
		{"empty cluster", hour(query.PowerQuery{Filters: cluster("")}), "filters: cluster value \"\": empty"},
		{"control character", hour(query.PowerQuery{Filters: cluster("c1\x00; DROP")}), "has a control character"},
		{"newline", hour(query.PowerQuery{Filters: cluster("c1\nc2")}), "has a control character"},
		{"long value", hour(query.PowerQuery{Filters: cluster(strings.Repeat("c", 300))}), "300 bytes, at most 256"},
		{"not UTF-8", hour(query.PowerQuery{Filters: cluster("c\xff")}), "not UTF-8"},
		{"too many values", hour(query.PowerQuery{Filters: cluster(slices.Repeat([]string{"c"}, 1001)...)}), "1001 values, at most 1000"},
		{"no values", hour(query.PowerQuery{Filters: cluster()}), "cluster has no values"},
		{"unknown dim", hour(query.PowerQuery{Filters: []query.Filter{{Dim: "datacenter", Values: []string{"x"}}}}), `"datacenter" is not one of`},
		{"agg", hour(query.PowerQuery{Agg: query.P99}), `agg: "p99": a step's seconds take avg, max or min`},
		{"source", hour(query.PowerQuery{Source: "fleet_1m"}), `source: "fleet_1m"`},
		{"a week at 1 s", hour(query.PowerQuery{From: now.Add(-7 * 24 * time.Hour), To: now}), "step: 1s over 168h0m0s is 604800 points per cluster, limit 100000: widen the step"},
		{"half seconds", hour(query.PowerQuery{Step: 1500 * time.Millisecond}), "step: 1.5s: must be a whole number of seconds"},
		{"backwards", hour(query.PowerQuery{From: now, To: now.Add(-time.Hour)}), "to: "},
		{"no window", &query.PowerQuery{}, "from: the window needs both from and to"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := query.FleetPower(ctx, st, c.q)
			if !errors.Is(err, query.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want ErrInvalid with %q", err, c.want)
			}
		})
	}
	got, err := query.FleetPower(ctx, st, hour(query.PowerQuery{Filters: cluster("c1' OR 1=1 --", `"; SELECT 1`)}))
	if err != nil || len(got.Series) != 0 {
		t.Fatalf("odd but valid cluster names: %+v, %v; want no series", got, err)
	}
}

// 24 hours of one cluster's per-second power read one row a second, 86,400, whatever the
// cluster's GPUs, once parts have merged — and the engine reads whole granules: the window's ends
// may fall inside one, or on the edge of the granule before, whose rows are read too. 0024's
// granules of 64 rows bound that to 128 rows (8,192's read 98,304 rows for a UTC day); the
// figures are logged (-v).
func TestFleetPowerDayRowsRead(t *testing.T) {
	st := powerStore(t)
	ctx := context.Background()
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-48 * time.Hour)
	const gpus = 1 // the rollup has a row per cluster and second however many GPUs it sums
	for h := range 48 {
		var rs []powerReading
		for s := range 3600 {
			at := day.Add(time.Duration(h)*time.Hour + time.Duration(s)*time.Second + 200*time.Millisecond)
			for _, c := range []string{"a", "b", "c"} {
				for g := range gpus {
					rs = append(rs, powerReading{at: at, cluster: c, node: "n", gpu: uint8(g), uuid: fmt.Sprintf("GPU-%s-%d", c, g), w: float32(100 + s%50)})
				}
			}
		}
		if err := st.Insert(ctx, schema.GPUSamples, powerBlock(rs), fmt.Sprintf("day/%d", h)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(st.Database(), schema.ClusterPower1s)+" FINAL"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		max      uint64
	}{
		{"a UTC day", day, day.Add(24 * time.Hour), 86_400 + 2*64},
		{"the 24 h to 13:37:21", day.Add(13*time.Hour + 37*time.Minute + 21*time.Second), day.Add(37*time.Hour + 37*time.Minute + 21*time.Second), 86_400 + 2*64},
	} {
		got, err := query.FleetPower(ctx, st, &query.PowerQuery{Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"b"}}}, From: c.from, To: c.to})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s of cluster b: %d rows read for %d points", c.name, got.RowsRead, len(got.Series[0].Points))
		if got.RowsRead < 86_400 || got.RowsRead > c.max || len(got.Series[0].Points) != 86_400 {
			t.Errorf("%s of cluster b read %d rows for %d points, want 86,400 points from 86,400 … %d rows", c.name, got.RowsRead, len(got.Series[0].Points), c.max)
		}
	}
}

// Every SQL example in docs/power.md runs against the schema migrate creates.
func TestPowerDocExamplesRun(t *testing.T) {
	doc, err := os.ReadFile("../docs/power.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(examples) < 2 {
		t.Fatalf("found %d SQL examples in docs/power.md, want the definition and the rollup's", len(examples))
	}
	st := powerStore(t)
	for _, ex := range examples {
		sql := strings.TrimSuffix(strings.TrimSpace(strings.ReplaceAll(ex[1], "gpufleet.", st.Database()+".")), ";")
		if _, err := st.Query(context.Background(), sql); err != nil {
			t.Errorf("example fails: %v\n%s", err, ex[1])
		}
	}
}
