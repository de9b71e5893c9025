package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query"
)

// The power query type draws query.FleetPower's series, one field per cluster in W, at the panel's
// step (1 s for five minutes at 1,000 points); a pool filter (the fleet dashboard's $pool) reads
// the raw rows; parameters the query layer refuses are 400s, and the compile resource shows the
// rollup it reads.
func TestPowerQuery(t *testing.T) {
	st, end := fleet(t)
	ds := plugin.New(st, func() time.Time { return end })
	ctx := context.Background()
	from := end.Add(-5 * time.Minute)
	run := func(t *testing.T, q map[string]any) backend.DataResponse {
		t.Helper()
		q["queryType"] = "power"
		dq := dataQuery("A", from, end, q)
		dq.Interval = time.Second
		resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dq}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Responses["A"]
	}

	want, err := query.FleetPower(ctx, st, &query.PowerQuery{From: from, To: end, Step: time.Second, Agg: query.Max})
	if err != nil || len(want.Series) != 2 {
		t.Fatalf("FleetPower: %+v, %v", want, err)
	}
	r := run(t, map[string]any{"agg": "max"})
	if r.Error != nil || len(r.Frames) != 1 {
		t.Fatalf("%v %v", r.Error, r.Frames)
	}
	f := r.Frames[0]
	if f.Meta == nil || f.Meta.Type != data.FrameTypeTimeSeriesWide || len(f.Fields) != 3 {
		t.Fatalf("frame %v with %d fields, want a wide time series of east and west", f.Meta, len(f.Fields))
	}
	for i, s := range want.Series {
		fl := f.Fields[1+i]
		if fl.Labels["cluster"] != s.Labels["cluster"] || fl.Config == nil || fl.Config.Unit != "watt" || fl.Len() != len(s.Points) {
			t.Fatalf("field %s %v (%d values), want %v in watt with %d", fl.Name, fl.Labels, fl.Len(), s.Labels, len(s.Points))
		}
		for j, p := range s.Points {
			if v, _ := fl.ConcreteAt(j); f.Fields[0].At(j).(time.Time) != p.T || v != *p.Value {
				t.Fatalf("%s at %s: %v, FleetPower says %v", s.Labels["cluster"], p.T, v, *p.Value)
			}
		}
	}

	for _, c := range []struct {
		name    string
		q       map[string]any
		fields  int
		wantErr string
	}{
		{"one cluster", map[string]any{"filters": []map[string]any{{"dim": "cluster", "values": []string{"west"}}}}, 2, ""},
		{"a pool, from the raw rows", map[string]any{"filters": []map[string]any{{"dim": "pool", "values": []string{"train"}}}}, 3, ""},
		{"no pool (unset), from the raw rows", map[string]any{"filters": []map[string]any{{"dim": "pool", "values": []string{""}}}}, 1, ""},
		{"a node, from the raw rows", map[string]any{"filters": []map[string]any{{"dim": "node", "values": []string{"node-00001"}}}}, 2, ""},
		{"a variable without options", map[string]any{"filters": []map[string]any{{"dim": "cluster", "values": []string{}}}}, 1, ""},
		{"an empty cluster", map[string]any{"filters": []map[string]any{{"dim": "cluster", "values": []string{""}}}}, 0, "cluster value \"\": empty"},
		{"a control character", map[string]any{"filters": []map[string]any{{"dim": "cluster", "values": []string{"east\r\n"}}}}, 0, "control character"},
		{"a percentile", map[string]any{"agg": "p99"}, 0, `agg: "p99"`},
		{"an unknown label", map[string]any{"filters": []map[string]any{{"dim": "datacenter", "values": []string{"x"}}}}, 0, `"datacenter" is not one of`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.q)
			if c.wantErr != "" {
				if r.Error == nil || r.Status != backend.StatusBadRequest || !strings.Contains(r.Error.Error(), c.wantErr) {
					t.Fatalf("%v (status %d), want a 400 with %q", r.Error, r.Status, c.wantErr)
				}
				return
			}
			if r.Error != nil || len(r.Frames) != 1 || len(r.Frames[0].Fields) != c.fields {
				t.Fatalf("%v: %d frames, want one of %d fields", r.Error, len(r.Frames), c.fields)
			}
		})
	}

	body, _ := json.Marshal(map[string]any{"queryType": "power", "agg": "max", "from": from.UnixMilli(), "to": end.UnixMilli(),
		"intervalMs": 1000, "maxDataPoints": 1000})
	var got plugin.Compiled
	err = ds.CallResource(ctx, &backend.CallResourceRequest{Method: "POST", Path: "compile", URL: "/compile", Body: body},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
			if r.Status != 200 {
				return fmt.Errorf("compile: %d %s", r.Status, r.Body)
			}
			return json.Unmarshal(r.Body, &got)
		}))
	if err != nil || got.Table != "cluster_power_1s" || !strings.Contains(got.SQL, "max(w)") || got.Params["step"] != "1" {
		t.Errorf("compile: %+v, %v", got, err)
	}
}
