package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// GET /api/v1/power answers each cluster's power per second as query.FleetPower does, from the
// rollup or, with a filter on another label, the raw rows; hostile parameters are 400s naming the
// parameter, before anything runs.
func TestPowerEndpoint(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Minute)
	from := now.Add(-10 * time.Minute)
	if _, err := (seed.Fleet{Seed: 1, Nodes: 4, GPUsPerNode: 2, Clusters: []string{"c1", "c2"}, From: from, To: now.Add(-5 * time.Minute),
		Step: 10 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.Handler(st, func() time.Time { return now }))
	defer srv.Close()
	get := func(t *testing.T, path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !json.Valid(body) {
			t.Errorf("body is not JSON: %s", body)
		}
		return resp.StatusCode, body
	}

	want, err := query.FleetPower(ctx, st, &query.PowerQuery{Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"c1"}}},
		From: now.Add(-15 * time.Minute), To: now, Step: time.Minute, Agg: query.Max})
	if err != nil || len(want.Series) != 1 {
		t.Fatalf("FleetPower: %+v, %v", want, err)
	}
	code, body := get(t, "/api/v1/power?cluster=c1&since=15m&step=1m&agg=max")
	var got query.Power
	if err := json.Unmarshal(body, &got); code != 200 || err != nil {
		t.Fatalf("%d %s (%v)", code, body, err)
	}
	if got.Table != "cluster_power_1s" || len(got.Series) != 1 || got.Series[0].Labels["cluster"] != "c1" ||
		len(got.Series[0].Points) != len(want.Series[0].Points) || *got.Series[0].Points[0].Value != *want.Series[0].Points[0].Value || got.RowsRead == 0 {
		t.Errorf("got %s, want the series of %+v", body, want.Series)
	}

	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/power?since=15m", 200, `"cluster":"c2"`},
		{"/api/v1/power?cluster=c1|c2&since=15m&step=10s&agg=min", 200, `"cluster":"c1"`},
		{"/api/v1/power?filter=node=node-00001&since=15m", 200, `"table":"gpu_samples"`},
		{"/api/v1/power?source=raw&since=15m", 200, `"table":"gpu_samples"`},
		{"/api/v1/power?cluster=" + url.QueryEscape("c1' OR 1=1 --") + "&since=15m", 200, `"series":[]`},
		{"/api/v1/power?cluster=", 400, `filters: cluster value \"\": empty`},
		{"/api/v1/power?cluster=c1|", 400, `filters: cluster value \"\": empty`},
		{"/api/v1/power?cluster=c1%00x", 400, `has a control character`},
		{"/api/v1/power?cluster=" + strings.Repeat("x", 300), 400, `300 bytes, at most 256`},
		{"/api/v1/power?since=1000h", 400, `step: 1s over 1000h0m0s is 3600000 points per cluster, limit 100000: widen the step`},
		{"/api/v1/power?since=8760h&step=1m", 400, `widen the step`},
		{"/api/v1/power?step=1500ms", 400, `step: 1.5s: must be a whole number of seconds`},
		{"/api/v1/power?step=-1s", 400, `step: \"-1s\" is not a positive duration`},
		{"/api/v1/power?agg=p99", 400, `agg: \"p99\"`},
		{"/api/v1/power?source=fleet_1m", 400, `source: \"fleet_1m\"`},
		{"/api/v1/power?filter=datacenter=x", 400, `filter: \"datacenter=x\"`},
		{"/api/v1/power?from=yesterday", 400, `from: \"yesterday\" is not an RFC 3339 time`},
	} {
		t.Run(c.path, func(t *testing.T) {
			code, body := get(t, c.path)
			if code != c.code || !strings.Contains(string(body), c.want) {
				t.Fatalf("%d %s; want %d with %s", code, body, c.code, c.want)
			}
		})
	}
}
