package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query/failseed"
)

// failureDatasource is the datasource on a reader of failseed's fleet, its clock at the fleet's
// instant; w is the writer, for snapshots.
func failureDatasource(t *testing.T) (*plugin.Datasource, store.Store, time.Time) {
	t.Helper()
	w := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	if err := failseed.CheckCatalog(ctx, w); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	if err := failseed.Write(ctx, w, at); err != nil {
		t.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return plugin.New(rd, func() time.Time { return at }), w, at
}

// rows renders a frame's rows, a line each, fields separated by a space.
func rows(f *data.Frame) []string {
	var out []string
	for i := range f.Rows() {
		var cells []string
		for _, fl := range f.Fields {
			v := fl.At(i)
			if t, ok := v.(time.Time); ok {
				v = t.UTC().Format(time.RFC3339)
			}
			cells = append(cells, fmt.Sprint(v))
		}
		out = append(out, strings.Join(cells, " "))
	}
	return out
}

// The health, drain and interruptions query types answer typed frames of the seeded history:
// counts by state, cluster and model, the drain list with its since times, the root-cause table.
func TestFailureQueryTypes(t *testing.T) {
	ds, _, at := failureDatasource(t)
	ctx := context.Background()
	from := at.Add(-time.Hour)
	resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("H", from, at.Add(time.Hour), map[string]any{"queryType": "health"}), // the range's end is later than now: now
		dataQuery("D", from, at, map[string]any{"queryType": "drain"}),
		dataQuery("I", from, at, map[string]any{"queryType": "interruptions", "within": 300}),
		dataQuery("L", from, at, map[string]any{"queryType": "drain", "limit": 2, "filters": []map[string]any{{"dim": "cluster", "values": []string{"east"}}}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Responses["H"]
	if h.Error != nil || len(h.Frames) != 3 {
		t.Fatalf("health: %v, %d frames", h.Error, len(h.Frames))
	}
	for i, want := range [][]string{
		{"healthy 2", "degraded 1", "restart_app 1", "reset_gpu 1", "reboot_node 1", "service 1", "stopped_reporting 1", "unknown 0"},
		{"east 6 1 1 1 1 0 1 1 0", "west 2 1 0 0 0 1 0 0 0"},
		{"A100 2 1 0 0 0 1 0 0 0", "H100 6 1 1 1 1 0 1 1 0"},
	} {
		if got := rows(h.Frames[i]); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("health frame %q:\n%s\nwant:\n%s", h.Frames[i].Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if f := h.Frames[1]; f.Fields[2].Name != "healthy" || f.Fields[8].Name != "stopped_reporting" || f.Fields[1].Type() != data.FieldTypeUint64 {
		t.Errorf("health by cluster fields %s…%s of %s", f.Fields[2].Name, f.Fields[8].Name, f.Fields[1].Type())
	}

	d := resp.Responses["D"]
	if d.Error != nil || len(d.Frames) != 1 {
		t.Fatalf("drain: %v", d.Error)
	}
	f := d.Frames[0]
	var got []string
	for i := range f.Rows() {
		since := f.Fields[7].At(i).(time.Time)
		got = append(got, fmt.Sprintf("%s %s %d %s %s %s %s", f.Fields[0].At(i), f.Fields[1].At(i), f.Fields[2].At(i), f.Fields[3].At(i),
			f.Fields[5].At(i), since.Sub(at), f.Fields[8].At(i)))
	}
	if strings.Join(got, "\n") != strings.Join(failseed.Drain, "\n") || f.Fields[7].Type() != data.FieldTypeTime || f.Meta.Notices != nil {
		t.Errorf("drain:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(failseed.Drain, "\n"))
	}
	if l := resp.Responses["L"]; l.Error != nil || l.Frames[0].Rows() != 2 || len(l.Frames[0].Meta.Notices) != 1 ||
		l.Frames[0].Fields[3].At(0) != "GPU-e-0-3" || l.Frames[0].Fields[3].At(1) != "GPU-e-0-2" {
		t.Errorf("drain, east, limit 2: %v %v", l.Error, l.Frames)
	}

	i := resp.Responses["I"]
	if i.Error != nil || len(i.Frames) != 1 {
		t.Fatalf("interruptions: %v", i.Error)
	}
	got = nil
	for _, line := range rows(i.Frames[0]) {
		c := strings.Fields(line) // category n share cluster job event… (the event may be "xid 13")
		got = append(got, strings.Join(append([]string{c[0], c[1], c[4]}, c[5:len(c)-2]...), " "))
	}
	if strings.Join(got, "\n") != strings.Join(failseed.Interruptions, "\n") {
		t.Errorf("interruptions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(failseed.Interruptions, "\n"))
	}
	if custom := i.Frames[0].Meta.Custom.(map[string]any); custom["jobs_ended"] != uint64(failseed.JobsEnded) || custom["interruptions"] != uint64(5) ||
		i.Frames[0].Fields[2].At(0) != 0.4 {
		t.Errorf("interruptions meta %v, first share %v", custom, i.Frames[0].Fields[2].At(0))
	}
}

// Bad failure queries are 400s naming the field, and hostile filter values are inert: a 400 or
// empty frames, the tables and files as they were.
func TestFailureQueryTypesRefuse(t *testing.T) {
	ds, w, at := failureDatasource(t)
	ctx := context.Background()
	from := at.Add(-time.Hour)
	for _, c := range []struct {
		q    map[string]any
		says string
	}{
		{map[string]any{"queryType": "health", "lookback": "soon"}, `lookback: "soon" is not a positive duration`},
		{map[string]any{"queryType": "drain", "silent": "5s"}, "silent: 5s: at least 1m"},
		{map[string]any{"queryType": "drain", "limit": 20000}, "limit: 20000: between 1 and 10000"},
		{map[string]any{"queryType": "drain", "filters": []map[string]any{{"dim": "job", "values": []string{"j-a"}}}}, "filters: job"},
		{map[string]any{"queryType": "drain", "filters": []map[string]any{{"dim": "1=1", "values": []string{"x"}}}}, `filters: "1=1"`},
		{map[string]any{"queryType": "interruptions", "within": -1}, "within: -1"},
		{map[string]any{"queryType": "interruptions", "within": 100000}, "within: 27h46m40s"},
		{map[string]any{"queryType": "interruptions", "silent": "-2m"}, `silent: "-2m"`},
	} {
		resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("A", from, at, c.q)}})
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.Responses["A"]; r.Status != backend.StatusBadRequest || r.Error == nil || !strings.Contains(r.Error.Error(), c.says) {
			t.Errorf("%v: %d %v; want 400 saying %s", c.q, r.Status, r.Error, c.says)
		}
	}

	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	for _, typ := range []string{"health", "drain", "interruptions"} {
		for _, v := range []string{"east' OR '1'='1", "x'); DROP TABLE " + w.Database() + ".gpu_events; --", "{at_ms:Int64}",
			"' UNION ALL SELECT name FROM system.tables --", "e-0\x00"} {
			resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("A", from, at,
				map[string]any{"queryType": typ, "filters": []map[string]any{{"dim": "node", "values": []string{v}}}})}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.Responses["A"]
			if r.Error != nil {
				if r.Status != backend.StatusBadRequest {
					t.Errorf("%s %q: %d %v", typ, v, r.Status, r.Error)
				}
				continue
			}
			switch n := r.Frames[len(r.Frames)-1].Rows(); {
			case typ == "health" && (n != 0 || r.Frames[0].Fields[1].At(0) != uint64(0)):
				t.Errorf("%s %q: %v", typ, v, rows(r.Frames[0]))
			case typ != "health" && n != 0:
				t.Errorf("%s %q: %d rows", typ, v, n)
			}
		}
	}
	if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
		t.Fatalf("after the hostile filters:\n%s\nwas\n%s", after, before)
	}

	// The compile resource shows what a drain query runs, with its values bound, not spliced.
	code, body := resource(t, ds, "POST", "compile", `{"queryType":"drain","limit":5,"filters":[{"dim":"node","values":["x' OR 1=1"]}],"from":1,"to":2}`)
	var c plugin.Compiled
	if err := json.Unmarshal(body, &c); code != http.StatusOK || err != nil || !strings.Contains(c.SQL, "LIMIT {limit:UInt32}") ||
		strings.Contains(c.SQL, "OR 1=1") || c.Params["limit"] != "6" || c.Params["f0"] != `['x\' OR 1=1']` {
		t.Errorf("compile: %d %s", code, body)
	}
}
