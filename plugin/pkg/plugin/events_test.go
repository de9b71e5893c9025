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

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

func resource(t *testing.T, ds *plugin.Datasource, method, path, body string) (int, []byte) {
	t.Helper()
	var got *backend.CallResourceResponse
	p, _, _ := strings.Cut(path, "?")
	err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Method: method, Path: p,
		URL: "/api/datasources/uid/x/resources/" + path, Body: []byte(body)},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error { got = r; return nil }))
	if err != nil || got == nil {
		t.Fatalf("%s: %v", path, err)
	}
	return got.Status, got.Body
}

// The labels resource answers at most 10,000 values and says when a dimension had more; a
// multi-value cluster narrows to any of its clusters.
func TestLabelsTruncated(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	// 10,001 jobs seen in the last hour, each on one GPU-hour row.
	if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (t, cluster, node, uuid, job_id) SELECT toStartOfHour(toDateTime(%d, 'UTC')), 'east', 'node-x', 'GPU-x', concat('job-', leftPad(toString(number), 5, '0')) FROM numbers(10001)",
		store.Table(st.Database(), "gpu_1h"), end.Unix())); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path      string
		n         int
		first     string
		truncated bool
	}{
		{"labels?dim=job", 10000, "job-00000", true},
		{"labels?dim=job&cluster=west", 2, "", false}, // the seeded fleet's only
		{"labels?dim=job&cluster=nowhere", 0, "", false},
		{"labels?dim=cluster", 2, "east", false},
		{"labels?dim=node&cluster=east&cluster=west", 5, "node-00000", false},
		{"labels?dim=node&cluster=east", 3, "node-00000", false}, // node-x and east's two
	} {
		code, body := resource(t, ds, "GET", tc.path, "")
		var got plugin.Labels
		if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %v %.200s", tc.path, code, err, body)
		}
		if len(got.Values) != tc.n || got.Truncated != tc.truncated || (tc.first != "" && got.Values[0] != tc.first) {
			t.Errorf("%s: %d values from %v, truncated %v; want %d from %s, truncated %v", tc.path, len(got.Values),
				first(got.Values), got.Truncated, tc.n, tc.first, tc.truncated)
		}
	}
}

func first(vs []string) any {
	if len(vs) == 0 {
		return nil
	}
	return vs[0]
}

// A filter with no values (a template variable with no options) is no data, not a 400, in every
// builder mode; a bad dimension beside it is still an error.
func TestEmptyFilterIsNoData(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	from := end.Add(-20 * time.Minute)
	none := []map[string]any{{"dim": "cluster", "values": []string{"east"}}, {"dim": "node", "values": []string{}}}
	resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("series", from, end, map[string]any{"metric": "gpu_util", "groupBy": []string{"node"}, "filters": none}),
		dataQuery("stat", from, end, map[string]any{"queryType": "stat", "metric": "gpu_util", "filters": none}),
		dataQuery("top", from, end, map[string]any{"queryType": "top", "metric": "gpu_util", "filters": none}),
		dataQuery("events", from, end, map[string]any{"queryType": "annotations", "filters": none}),
		dataQuery("bad", from, end, map[string]any{"metric": "gpu_util",
			"filters": []map[string]any{{"dim": "datacenter", "values": []string{"x"}}, {"dim": "node", "values": []string{}}}}),
		dataQuery("badmetric", from, end, map[string]any{"metric": "nope", "filters": none}),
		dataQuery("badtop", from, end, map[string]any{"queryType": "top", "metric": "energy_mj", "filters": none}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"series", "stat", "top", "events"} {
		r := resp.Responses[ref]
		if r.Error != nil || len(r.Frames) != 1 || r.Frames[0].Rows() != 0 {
			t.Errorf("%s: %v, %d frames, want one empty frame", ref, r.Error, len(r.Frames))
			continue
		}
		if ref == "series" || ref == "stat" {
			if len(r.Frames[0].Fields) > 1 || r.Frames[0].Meta == nil || r.Frames[0].Meta.TypeVersion.IsZero() {
				t.Errorf("%s: %d fields, meta %+v; want no series, typed", ref, len(r.Frames[0].Fields), r.Frames[0].Meta)
			}
		}
	}
	for _, ref := range []string{"bad", "badmetric", "badtop"} {
		if r := resp.Responses[ref]; r.Error == nil || r.Status != backend.StatusBadRequest {
			t.Errorf("%s beside an empty filter: %v %v, want 400", ref, r.Status, r.Error)
		}
	}
}

// A per-query alias names each series in the legend from its labels.
func TestAlias(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	from := end.Add(-20 * time.Minute)
	resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("A", from, end, map[string]any{"metric": "gpu_util", "groupBy": []string{"cluster"}, "alias": "{{ cluster }} {{metric}}{{nope}}"}),
		dataQuery("B", from, end, map[string]any{"queryType": "stat", "metric": "power_w", "groupBy": []string{"cluster"}, "alias": "power of {{cluster}}"}),
		dataQuery("C", from, end, map[string]any{"metric": "gpu_util", "groupBy": []string{"cluster"}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	names := func(ref string) []string {
		var out []string
		for _, f := range resp.Responses[ref].Frames[0].Fields {
			if f.Type().Time() {
				continue
			}
			if f.Config == nil {
				out = append(out, "")
				continue
			}
			out = append(out, f.Config.DisplayNameFromDS)
		}
		return out
	}
	for ref, want := range map[string]string{"A": "east gpu_util,west gpu_util", "B": "power of east,power of west", "C": ","} {
		if got := strings.Join(names(ref), ","); got != want {
			t.Errorf("%s: display names %q, want %q", ref, got, want)
		}
	}
}

// An XID storm: the annotations stop at eventsMax (5,000) events, the first of the range, each with
// its catalog meaning: the join with xid_catalog adds words, not rows.
func TestAnnotationsBounded(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code) "+
		"SELECT fromUnixTimestamp64Milli(toInt64(%d + number)), 'east', 'node-00000', 0, 'GPU-a', 'xid', 48 FROM numbers(6000)",
		store.Table(st.Database(), "gpu_events"), end.Add(-time.Hour).UnixMilli())); err != nil {
		t.Fatal(err)
	}
	resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("storm", end.Add(-2*time.Hour), end, map[string]any{"queryType": "annotations", "kinds": []string{"xid"}})}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Responses["storm"]
	if r.Error != nil || len(r.Frames) != 1 {
		t.Fatalf("storm: %v", r.Error)
	}
	f := r.Frames[0]
	if f.Rows() != 5000 {
		t.Fatalf("%d annotations, want 5000", f.Rows())
	}
	first, last := f.Fields[0].At(0).(time.Time), f.Fields[0].At(4999).(time.Time)
	if start := end.Add(-time.Hour); !first.Equal(start) || !last.Equal(start.Add(4999*time.Millisecond)) {
		t.Errorf("annotations from %v to %v, want the range's first 5000 in order from %v", first, last, start)
	}
	if text := f.Fields[1].At(4999).(string); !strings.Contains(text, "XID 48 ROBUST_CHANNEL_GPU_ECC_DBE") ||
		!strings.Contains(text, "immediate action WORKFLOW_XID_48") {
		t.Errorf("last annotation %q lacks the catalog's words", text)
	}
}

// Annotations: GPU events of the range as time, text and tags, by kind and dimension.
func TestAnnotations(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	from := end.Add(-20 * time.Minute)
	at := func(d time.Duration) string { return end.Add(-d).Format("2006-01-02 15:04:05.000") }
	if err := st.Exec(ctx, "INSERT INTO "+store.Table(st.Database(), "gpu_events")+
		" (time, cluster, node, gpu, uuid, kind, code, pid, message) VALUES "+
		"('"+at(10*time.Minute)+"', 'east', 'node-00000', 1, 'GPU-a', 'xid', 79, 0, 'GPU has fallen off the bus'),"+
		"('"+at(8*time.Minute)+"', 'east', 'node-00000', 1, 'GPU-a', 'ecc_dbe', 0, 0, ''),"+
		"('"+at(6*time.Minute)+"', 'west', 'node-00001', 2, 'GPU-b', 'throttle', 8, 0, ''),"+
		"('"+at(4*time.Minute)+"', 'west', 'node-00001', 2, 'GPU-b', 'xid', 13, 4242, 'Graphics Engine Exception'),"+
		"('"+at(2*time.Minute)+"', 'east', 'node-00000', 1, 'GPU-a', 'xid', 9999, 0, 'from a newer driver'),"+
		"('"+at(30*time.Minute)+"', 'west', 'node-00001', 2, 'GPU-b', 'fell_off_bus', 0, 0, 'before the range')"); err != nil {
		t.Fatal(err)
	}
	resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
		dataQuery("all", from, end, map[string]any{"queryType": "annotations"}),
		dataQuery("xid", from, end, map[string]any{"queryType": "annotations", "kinds": []string{"xid"}}),
		dataQuery("west", from, end, map[string]any{"queryType": "annotations",
			"filters": []map[string]any{{"dim": "cluster", "values": []string{"west"}}, {"dim": "gpu", "values": []string{"GPU-b"}}}}),
		dataQuery("badkind", from, end, map[string]any{"queryType": "annotations", "kinds": []string{"oops"}}),
		dataQuery("baddim", from, end, map[string]any{"queryType": "annotations",
			"filters": []map[string]any{{"dim": "model", "values": []string{"H100"}}}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	texts := func(ref string) []string {
		r := resp.Responses[ref]
		if r.Error != nil || len(r.Frames) != 1 {
			t.Fatalf("%s: %v", ref, r.Error)
		}
		f := r.Frames[0]
		if len(f.Fields) != 3 || f.Fields[0].Name != "time" || f.Fields[1].Name != "text" || f.Fields[2].Name != "tags" ||
			f.Fields[0].Type() != data.FieldTypeTime {
			t.Fatalf("%s: fields %v, want time, text, tags", ref, f.Fields)
		}
		var out []string
		for i := 0; i < f.Rows(); i++ {
			out = append(out, f.Fields[1].At(i).(string)+" ["+f.Fields[2].At(i).(string)+"]")
		}
		return out
	}
	// An XID carries the Xid catalog's mnemonic, description and immediate action; a code the
	// catalog lacks still shows; the throttle bitmask 8 is not Xid 8.
	want := []string{
		"XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS on node-00000 GPU-a: GPU has fallen off the bus. " +
			"Catalog: GPU has fallen off the bus; immediate action RESTART_BM [xid,east,node-00000,xid 79]",
		"ECC double-bit error on node-00000 GPU-a [ecc_dbe,east,node-00000]",
		"clocks throttled (reasons 0x8) on node-00001 GPU-b [throttle,west,node-00001]",
		"XID 13 ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY on node-00001 GPU-b (pid 4242): Graphics Engine Exception. " +
			"Catalog: Graphics Engine Exception; immediate action RESTART_APP [xid,west,node-00001,xid 13]",
		"XID 9999 on node-00000 GPU-a: from a newer driver. Not in the Xid catalog [xid,east,node-00000,xid 9999]",
	}
	if got := texts("all"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("all:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := texts("xid"); len(got) != 3 || got[0] != want[0] || got[1] != want[3] || got[2] != want[4] {
		t.Errorf("xid: %q", got)
	}
	if got := texts("west"); len(got) != 2 || got[0] != want[2] || got[1] != want[3] {
		t.Errorf("west: %q", got)
	}
	if f := resp.Responses["all"].Frames[0]; !f.Fields[0].At(0).(time.Time).Equal(end.Add(-10 * time.Minute)) {
		t.Errorf("first event at %v, want %v", f.Fields[0].At(0), end.Add(-10*time.Minute))
	}
	for _, ref := range []string{"badkind", "baddim"} {
		if r := resp.Responses[ref]; r.Error == nil || r.Status != backend.StatusBadRequest {
			t.Errorf("%s: %v %v, want 400", ref, r.Status, r.Error)
		}
	}
	// The editor shows what an annotations query runs.
	code, body := resource(t, ds, "POST", "compile", `{"queryType":"annotations","kinds":["xid"],"from":1,"to":2}`)
	if code != http.StatusOK || !strings.Contains(string(body), "gpu_events") || !strings.Contains(string(body), "kind IN {kinds:Array(String)}") {
		t.Errorf("compile: %d %s", code, body)
	}
}
