package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// fleet seeds 4 simulated 8-GPU nodes in 2 clusters, sampled every 10 s for 20 minutes ending at
// the returned time.
func fleet(t *testing.T) (store.Store, time.Time) {
	t.Helper()
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute)
	if _, err := (seed.Fleet{Seed: 3, Nodes: 4, GPUsPerNode: 8, Clusters: []string{"east", "west"},
		From: end.Add(-20 * time.Minute), To: end, Step: 10 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	return st, end
}

func dataQuery(refID string, from, to time.Time, q map[string]any) backend.DataQuery {
	raw, _ := json.Marshal(q)
	return backend.DataQuery{RefID: refID, JSON: raw, TimeRange: backend.TimeRange{From: from, To: to},
		Interval: 30 * time.Second, MaxDataPoints: 1000}
}

func TestQueryData(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	from := end.Add(-20 * time.Minute)

	resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("A", from, end, map[string]any{"metric": "gpu_util", "agg": "avg", "groupBy": []string{"cluster"}}),
		dataQuery("B", from, end, map[string]any{"queryType": "top", "metric": "temp_gpu_c", "agg": "max", "limit": 3,
			"filters": []map[string]any{{"dim": "cluster", "values": []string{"west"}}}}),
		dataQuery("C", from, end, map[string]any{"queryType": "sql",
			"rawSql": "SELECT $__timeInterval(time) AS t, count() AS n FROM " + st.Database() + ".gpu_samples WHERE $__timeFilter(time) GROUP BY t ORDER BY t"}),
		dataQuery("D", from, end, map[string]any{"metric": "energy_mj", "agg": "rate", "groupBy": []string{"node"},
			"filters": []map[string]any{{"dim": "cluster", "values": []string{"east"}}}}),
		dataQuery("E", from.Add(-20*time.Second), end, map[string]any{"queryType": "stat", "metric": "power_w", "agg": "p95", "groupBy": []string{"cluster"}}),
		dataQuery("F", from, end, map[string]any{"queryType": "stat", "metric": "gpu_util",
			"filters": []map[string]any{{"dim": "cluster", "values": []string{"nowhere"}}}}),
	}})
	if err != nil {
		t.Fatal(err)
	}

	// A: one wide frame, a time column and one field per cluster, equal to the query layer's answer
	// at the step the panel's 30 s interval becomes.
	a := resp.Responses["A"]
	if a.Error != nil || len(a.Frames) != 1 {
		t.Fatalf("A: %v, %d frames", a.Error, len(a.Frames))
	}
	want, err := query.Run(ctx, st, &query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Cluster},
		From: from, To: end, Step: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := a.Frames[0]
	if len(f.Fields) != 3 || f.Fields[0].Len() != 40 {
		t.Fatalf("A: %d fields of %d rows, want time + 2 clusters over 40 steps", len(f.Fields), f.Fields[0].Len())
	}
	for i, s := range want {
		field := f.Fields[1+i]
		if field.Labels["cluster"] != s.Labels["cluster"] {
			t.Fatalf("A: field %d labels %v, want %v", i, field.Labels, s.Labels)
		}
		for j, p := range s.Points {
			got, _ := field.ConcreteAt(j)
			if !f.Fields[0].At(j).(time.Time).Equal(p.T) || got != *p.Value {
				t.Fatalf("A: %s row %d = %v %v, want %v %v", s.Labels["cluster"], j, f.Fields[0].At(j), got, p.T, *p.Value)
			}
		}
	}

	// B: a table of the three hottest GPUs of cluster west, hottest first.
	b := resp.Responses["B"]
	if b.Error != nil || len(b.Frames) != 1 || b.Frames[0].Rows() != 3 {
		t.Fatalf("B: %v %v", b.Error, b.Frames)
	}
	top, _ := query.TopGPUs(ctx, st, "temp_gpu_c", "max", false, 3, from, end, query.Filter{Dim: query.Cluster, Values: []string{"west"}})
	for i, g := range top {
		if g.Cluster != "west" || b.Frames[0].Fields[0].At(i) != "west" || b.Frames[0].Fields[2].At(i) != g.UUID || b.Frames[0].Fields[5].At(i) != g.Value {
			t.Errorf("B row %d: %v %v, want %s %v", i, b.Frames[0].Fields[2].At(i), b.Frames[0].Fields[5].At(i), g.UUID, g.Value)
		}
	}

	// C: raw SQL; the bucket column becomes a time field, 32 GPUs × 3 readings per 30 s bucket.
	c := resp.Responses["C"]
	if c.Error != nil || len(c.Frames) != 1 {
		t.Fatalf("C: %v", c.Error)
	}
	if typ := c.Frames[0].Fields[0].Type().ItemTypeString(); typ != "time.Time" || c.Frames[0].Rows() != 40 {
		t.Fatalf("C: first field %s with %d rows, want time.Time with 40", typ, c.Frames[0].Rows())
	}
	if n, _ := c.Frames[0].Fields[1].ConcreteAt(0); n != float64(32*3) {
		t.Errorf("C: %v samples in the first bucket, want 96", n)
	}

	checkStat(t, ctx, st, resp, from, end)

	// Units from the metric catalogue: panels label values without the user picking one.
	for ref, want := range map[string]string{"A": "percent", "B": "celsius", "D": "mwatt", "E": "watt"} {
		for _, fl := range resp.Responses[ref].Frames[0].Fields {
			if fl.Type().Numeric() && (fl.Config == nil || fl.Config.Unit != want) {
				t.Errorf("%s: field %s has config %+v, want unit %s", ref, fl.Name, fl.Config, want)
			}
		}
	}

	// D: counters by node, filtered to one cluster: only east's two nodes.
	d := resp.Responses["D"]
	if d.Error != nil || len(d.Frames) != 1 || len(d.Frames[0].Fields) != 3 {
		t.Fatalf("D: %v %v", d.Error, d.Frames)
	}
}

func checkStat(t *testing.T, ctx context.Context, st store.Store, resp *backend.QueryDataResponse, from, end time.Time) {
	t.Helper()
	// E: one number per cluster over the window widened to whole minutes, in the numeric wide shape
	// stat panels and alert rules read.
	e := resp.Responses["E"]
	if e.Error != nil || len(e.Frames) != 1 || e.Frames[0].Meta.Type != data.FrameTypeNumericWide {
		t.Fatalf("E: %v %v", e.Error, e.Frames)
	}
	want, err := query.Run(ctx, st, &query.Query{Metric: "power_w", Agg: query.P95, GroupBy: []query.Dim{query.Cluster},
		From: from.Add(-time.Minute), To: end, Whole: true})
	if err != nil {
		t.Fatal(err)
	}
	if f := e.Frames[0]; len(f.Fields) != 2 || len(want) != 2 || f.Rows() != 1 {
		t.Fatalf("E: %d fields of %d rows, want one value for each of 2 clusters", len(f.Fields), f.Rows())
	}
	for i, s := range want {
		field := e.Frames[0].Fields[i]
		if got, _ := field.ConcreteAt(0); field.Labels["cluster"] != s.Labels["cluster"] || got != *s.Points[0].Value {
			t.Errorf("E: %v = %v, want %v = %v", field.Labels, got, s.Labels, *s.Points[0].Value)
		}
	}
	// F: nothing matches: a frame without values, which an alert rule treats as no data.
	if f := resp.Responses["F"]; f.Error != nil || len(f.Frames) != 1 || len(f.Frames[0].Fields) != 0 {
		t.Errorf("F: %v %v, want one empty frame", f.Error, f.Frames)
	}
}

// Every user-controlled field is validated or bound: hostile values fail cleanly or match nothing,
// and the table is unchanged.
func TestQueryDataRejectsInjection(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	from := end.Add(-20 * time.Minute)
	evil := "x'); DROP TABLE " + st.Database() + ".gpu_samples; --"
	cases := map[string]map[string]any{
		"metric":     {"metric": evil},
		"agg":        {"metric": "gpu_util", "agg": evil},
		"reason":     {"metric": "throttle_reasons", "agg": "share", "reason": evil},
		"groupBy":    {"metric": "gpu_util", "groupBy": []string{evil}},
		"filter dim": {"metric": "gpu_util", "filters": []map[string]any{{"dim": evil, "values": []string{"a"}}}},
		"queryType":  {"queryType": evil},
		"top order":  {"queryType": "top", "metric": "gpu_util", "order": evil},
		"top agg":    {"queryType": "top", "metric": "gpu_util", "agg": evil},
		"raw write":  {"queryType": "sql", "rawSql": "DROP TABLE " + st.Database() + ".gpu_samples"},
		"raw chain":  {"queryType": "sql", "rawSql": "SELECT 1; DROP TABLE " + st.Database() + ".gpu_samples"},
		"raw file":   {"queryType": "sql", "rawSql": "SELECT * FROM file('/etc/passwd', 'LineAsString')"},
	}
	for name, q := range cases {
		resp, _ := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("X", from, end, q)}})
		if resp.Responses["X"].Error == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A hostile filter value is bound: it matches nothing and runs.
	resp, _ := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("V", from, end,
		map[string]any{"metric": "gpu_util", "filters": []map[string]any{{"dim": "node", "values": []string{evil}}}})}})
	if r := resp.Responses["V"]; r.Error != nil || len(r.Frames[0].Fields) != 1 {
		t.Errorf("hostile filter value: %v, %d fields; want no error and no series", r.Error, len(r.Frames[0].Fields))
	}
	res, err := st.Query(ctx, "SELECT count() FROM "+st.Database()+".gpu_samples")
	if err != nil || res.Rows[0][0].(uint64) != 4*8*120 {
		t.Fatalf("gpu_samples changed: %v %v", res, err)
	}
}

func TestCheckHealth(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	r, err := ds.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil || r.Status != backend.HealthStatusOk || !strings.Contains(r.Message, "schema version") {
		t.Fatalf("healthy store: %v %+v", err, r)
	}
	if err := st.Exec(context.Background(), "DELETE FROM "+st.Database()+".schema_migrations WHERE version >= 3"); err != nil {
		t.Fatal(err)
	}
	r, _ = ds.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if r.Status != backend.HealthStatusError || !strings.Contains(r.Message, "is at schema version 2") ||
		!strings.Contains(r.Message, "gpufleet migrate") {
		t.Fatalf("old schema: %+v", r)
	}
}

func TestCallResource(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	call := func(path string) (int, string) {
		var got *backend.CallResourceResponse
		// As Grafana forwards it: Path is the resource path, URL the whole request URL with its query.
		p, _, _ := strings.Cut(path, "?")
		err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Method: "GET", Path: p,
			URL: "/api/datasources/uid/x/resources/" + path},
			backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error { got = r; return nil }))
		if err != nil || got == nil {
			t.Fatalf("%s: %v", path, err)
		}
		return got.Status, string(got.Body)
	}
	if code, body := call("labels?dim=cluster"); code != 200 || strings.TrimSpace(body) != `{"values":["east","west"],"truncated":false}` {
		t.Errorf("clusters: %d %s", code, body)
	}
	if code, body := call("labels?dim=node&cluster=west"); code != 200 || strings.TrimSpace(body) != `{"values":["node-00001","node-00003"],"truncated":false}` {
		t.Errorf("west nodes: %d %s", code, body)
	}
	if code, body := call("labels?dim=node&cluster=" + "x'%20OR%20'1'='1"); code != 200 || strings.TrimSpace(body) != `{"values":[],"truncated":false}` {
		t.Errorf("hostile cluster value: %d %s", code, body)
	}
	if code, _ := call("labels?dim=datacenter"); code != 400 {
		t.Errorf("unknown dim: %d, want 400", code)
	}
	if code, body := call("metrics"); code != 200 || !strings.Contains(body, `"column":"energy_mj","kind":"counter"`) {
		t.Errorf("metrics: %d %.200s", code, body)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/compile.golden.json")

// The compile resource answers what each kind of panel query will run, exactly as QueryData would
// run it; the answers are pinned in testdata/compile.golden.json.
func TestCompileResource(t *testing.T) {
	st := testenv.CHDB(t)
	ds := plugin.New(st, time.Now)
	from, to := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC).UnixMilli(), time.Date(2026, 5, 1, 16, 0, 0, 0, time.UTC).UnixMilli()
	cases := []struct {
		name string
		body string
		code int
	}{
		{"series, 6 h in 1000 points: a 22 s step, finer than any rollup, reads raw", `{"metric":"gpu_util","agg":"p99","groupBy":["cluster"],"intervalMs":15000,"maxDataPoints":1000}`, 200},
		{"series, 6 h in 300 points: a 2 min step reads the fleet minute digests", `{"metric":"gpu_util","agg":"p99","groupBy":["cluster"],"intervalMs":15000,"maxDataPoints":300}`, 200},
		{"stat: one number per node over the window", `{"queryType":"stat","metric":"temp_gpu_c","agg":"max","groupBy":["node"],"filters":[{"dim":"cluster","values":["east","it's"]}]}`, 200},
		{"top, in one pool", `{"queryType":"top","metric":"power_w","agg":"max","limit":5,"order":"asc","filters":[{"dim":"pool","values":["train"]}]}`, 200},
		{"top by p99, from the hourly digests", `{"queryType":"top","metric":"temp_gpu_c","agg":"p99","limit":10}`, 200},
		{"jobs, in one cluster, from the minute rollup", `{"queryType":"jobs","filters":[{"dim":"cluster","values":["east"]}]}`, 200},
		{"jobs with an unknown filter", `{"queryType":"jobs","filters":[{"dim":"colour","values":["red"]}]}`, 400},
		{"sql with macros", `{"queryType":"sql","rawSql":"SELECT $__timeInterval(time) AS t, avg(gpu_util) FROM gpufleet.gpu_samples WHERE $__timeFilter(time) GROUP BY t","intervalMs":60000}`, 200},
		{"unknown metric", `{"metric":"gpu_utilisation"}`, 400},
		{"counter with a gauge aggregation", `{"metric":"energy_mj","agg":"avg"}`, 400},
		{"unknown query type", `{"queryType":"drop"}`, 400},
		{"not JSON", `{"metric":`, 400},
		{"sql that writes", `{"queryType":"sql","rawSql":"DROP TABLE gpufleet.gpu_samples"}`, 400},
		{"sql into a file", `{"queryType":"sql","rawSql":"SELECT 1 INTO OUTFILE 'x.txt'"}`, 400},
		{"sql with two statements", `{"queryType":"sql","rawSql":"SELECT 1; SELECT 2"}`, 400},
		{"no body", ``, 400},
	}
	var got bytes.Buffer
	for _, c := range cases {
		body := c.body
		if strings.HasPrefix(body, "{\"") {
			body = fmt.Sprintf(`{"from":%d,"to":%d,`, from, to) + body[1:]
		}
		body = strings.ReplaceAll(body, "gpufleet.", st.Database()+".")
		var raw []byte
		if body != "" {
			raw = []byte(body)
		}
		var resp *backend.CallResourceResponse
		err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Method: "POST", Path: "compile",
			URL: "/api/datasources/uid/x/resources/compile", Body: raw},
			backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error { resp = r; return nil }))
		if err != nil || resp == nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if resp.Status != c.code {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.Status, c.code, resp.Body)
		}
		// The test database's name varies; the golden file says gpufleet.
		fmt.Fprintf(&got, "// %s → %d\n%s\n", c.name, resp.Status, bytes.ReplaceAll(resp.Body, []byte(st.Database()+"."), []byte("gpufleet.")))
	}
	path := filepath.Join("testdata", "compile.golden.json")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./plugin/pkg/plugin -run CompileResource -update writes it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("compile answers differ from %s (rerun with -update if intended):\n%s", path, got.String())
	}
}

func TestSettingsDSN(t *testing.T) {
	cases := []struct {
		s       plugin.Settings
		want    string
		wantErr string
	}{
		{plugin.Settings{Address: "ch:9000", Username: "grafana"}, "clickhouse://grafana:p%40ss@ch:9000/gpufleet", ""},
		{plugin.Settings{CHDBPath: "/var/lib/gpufleet", Database: "lab"}, "chdb:///var/lib/gpufleet?database=lab", ""},
		{plugin.Settings{}, "", "set the ClickHouse address"},
		{plugin.Settings{Address: "ch:9000", CHDBPath: "/x"}, "", "not both"},
		{plugin.Settings{Address: "ch:9000", Database: "a-b"}, "", "letters, digits and underscore"},
	}
	for _, c := range cases {
		got, err := c.s.DSN("p@ss")
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: %v, want error with %q", c.s, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: %q %v, want %q", c.s, got, err, c.want)
		}
	}
}

// A mistyped database creates nothing; the health check says to migrate and which setting to check,
// and once the schema exists the same instance connects without a settings change.
func TestHealthCheckCreatesNothing(t *testing.T) {
	w := testenv.CHDB(t)
	ctx := context.Background()
	db := w.Database() + "_typo"
	jsonData, _ := json.Marshal(map[string]any{"chdbPath": testenv.DataDir(t), "database": db})
	inst, err := plugin.NewDatasource(ctx, backend.DataSourceInstanceSettings{JSONData: jsonData})
	if err != nil {
		t.Fatal(err)
	}
	ds := inst.(*plugin.Datasource)
	defer ds.Dispose()
	r, err := ds.CheckHealth(ctx, &backend.CheckHealthRequest{})
	if err != nil || r.Status != backend.HealthStatusError || !strings.Contains(r.Message, "gpufleet migrate") ||
		!strings.Contains(r.Message, "Database") || strings.Contains(r.Message, "--clickhouse") {
		t.Fatalf("missing database: %v %+v", err, r)
	}
	res, err := w.Query(ctx, "SELECT count() FROM system.databases WHERE name = '"+db+"'")
	if err != nil || res.Rows[0][0] != uint64(0) {
		t.Fatalf("the health check created database %s: %v %v", db, res, err)
	}
	qr, _ := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("A", time.Now().Add(-time.Hour), time.Now(), map[string]any{"metric": "gpu_util"})}})
	if qr.Responses["A"].Error == nil {
		t.Error("a query on a missing database answered")
	}
	if err := w.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	defer w.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	r, _ = ds.CheckHealth(ctx, &backend.CheckHealthRequest{})
	if r.Status != backend.HealthStatusError || !strings.Contains(r.Message, "no gpufleet schema") || !strings.Contains(r.Message, "gpufleet migrate") {
		t.Fatalf("empty database: %+v", r)
	}
}

func TestHealthCheckWarnsWhenStale(t *testing.T) {
	st, end := fleet(t)
	for _, c := range []struct {
		now  time.Time
		warn bool
	}{{end, false}, {end.Add(3 * time.Minute), false}, {end.Add(time.Hour), true}} {
		r, err := plugin.New(st, func() time.Time { return c.now }).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
		if err != nil || r.Status != backend.HealthStatusOk {
			t.Fatalf("now %s: %v %+v", c.now, err, r)
		}
		if got := strings.Contains(r.Message, "WARNING"); got != c.warn {
			t.Errorf("now = end + %s: %q, want warning %v", c.now.Sub(end), r.Message, c.warn)
		}
	}
}

// Raw SQL fields are typed from the engine's column types, so an empty result keeps them (alerting
// then sees no data, not a frame it cannot read) and NULL, NaN, Decimal, Bool, Date and Nullable
// columns come out as what they are.
func TestRawSQLFrameTypes(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	run := func(sql, format string) *data.Frame {
		t.Helper()
		resp, _ := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
			dataQuery("A", end.Add(-20*time.Minute), end, map[string]any{"queryType": "sql", "rawSql": sql, "format": format})}})
		r := resp.Responses["A"]
		if r.Error != nil || len(r.Frames) != 1 {
			t.Fatalf("%s: %v", sql, r.Error)
		}
		return r.Frames[0]
	}
	f := run("SELECT toDateTime('2026-05-01 10:00:00', 'UTC') AS t, toDate('2026-05-01') AS d, CAST(NULL AS Nullable(Int32)) AS n, "+
		"toDecimal64(1.5, 2) AS dec, true AS b, nan AS x, 'a' AS s, toLowCardinality('lc') AS lc, [1, 2] AS arr", "")
	want := []data.FieldType{data.FieldTypeTime, data.FieldTypeTime, data.FieldTypeNullableFloat64, data.FieldTypeNullableFloat64,
		data.FieldTypeNullableBool, data.FieldTypeNullableFloat64, data.FieldTypeNullableString, data.FieldTypeNullableString, data.FieldTypeNullableString}
	for i, w := range want {
		if got := f.Fields[i].Type(); got != w {
			t.Errorf("field %s: %v, want %v", f.Fields[i].Name, got, w)
		}
	}
	if v, _ := f.Fields[3].ConcreteAt(0); v != 1.5 {
		t.Errorf("decimal = %v", v)
	}
	if v, ok := f.Fields[2].ConcreteAt(0); ok {
		t.Errorf("NULL = %v, want null", v)
	}
	if v, _ := f.Fields[4].ConcreteAt(0); v != true {
		t.Errorf("bool = %v", v)
	}
	// An alert query over a window with nothing in it: still one number and its labels, typed.
	empty := run("SELECT node, toFloat64(count()) AS xids FROM "+st.Database()+".gpu_events WHERE $__timeFilter(time) AND code = 79 GROUP BY node", "")
	if empty.Rows() != 0 || len(empty.Fields) != 2 || !empty.Fields[1].Type().Numeric() ||
		empty.Meta == nil || empty.Meta.Type != data.FrameTypeNumericLong {
		t.Errorf("empty alert result: %d rows, fields %v, meta %+v", empty.Rows(), empty.Fields, empty.Meta)
	}
	// time_series: a long result becomes one series per label set.
	wide := run("SELECT $__timeInterval(time) AS t, cluster, avg(gpu_util) AS util FROM "+st.Database()+
		".gpu_samples WHERE $__timeFilter(time) GROUP BY t, cluster ORDER BY t", "time_series")
	if len(wide.Fields) != 3 || wide.Meta == nil || wide.Meta.Type != data.FrameTypeTimeSeriesWide {
		t.Fatalf("time_series: fields %d, meta %+v", len(wide.Fields), wide.Meta)
	}
	clusters := map[string]bool{}
	for _, fl := range wide.Fields[1:] {
		clusters[fl.Labels["cluster"]] = true
	}
	if !clusters["east"] || !clusters["west"] {
		t.Errorf("time_series series labels: %v", clusters)
	}
}

// A share of throttle_reasons for one reason is what the query layer answers, in percent.
func TestQueryDataThrottleShare(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	from := end.Add(-20 * time.Minute)
	resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("S", from, end, map[string]any{"metric": "throttle_reasons", "agg": "share", "reason": "sw_thermal", "groupBy": []string{"cluster"}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Responses["S"]
	if r.Error != nil || len(r.Frames) != 1 {
		t.Fatalf("S: %v, %d frames", r.Error, len(r.Frames))
	}
	want, err := query.Run(ctx, st, &query.Query{Metric: "throttle_reasons", Agg: query.Share, Reason: "sw_thermal",
		GroupBy: []query.Dim{query.Cluster}, From: from, To: end, Step: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Frames[0]
	if len(want) == 0 || len(f.Fields) != 1+len(want) {
		t.Fatalf("S: %d fields, want time + %d series", len(f.Fields), len(want))
	}
	for i, s := range want {
		field := f.Fields[1+i]
		if field.Config == nil || field.Config.Unit != "percent" {
			t.Errorf("S: field %d unit %+v, want percent", i, field.Config)
		}
		for j, p := range s.Points {
			got, _ := field.ConcreteAt(j)
			if p.Value != nil && got != *p.Value {
				t.Fatalf("S: %s row %d = %v, want %v", s.Labels["cluster"], j, got, *p.Value)
			}
		}
	}
}
