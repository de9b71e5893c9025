package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Every endpoint answers JSON over a small simulated fleet; bad parameters are 400s naming the
// parameter.
func TestEndpoints(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Minute)
	if _, err := (seed.Fleet{Seed: 1, Nodes: 2, GPUsPerNode: 8, Clusters: []string{"c1"}, From: now.Add(-10 * time.Minute),
		To: now.Add(-5 * time.Minute), Step: 10 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.Handler(st, func() time.Time { return now }))
	defer srv.Close()

	cases := []struct {
		path string
		code int
		want string // substring of the body
	}{
		{"/api/v1/summary?since=1h", 200, `"gpus":16`},
		{"/api/v1/series?metric=gpu_util&agg=p99&step=1m&since=15m", 200, `"points"`},
		{"/api/v1/series?metric=temp_gpu_c&agg=max&by=node&filter=node=node-00001&since=15m", 200, `"node":"node-00001"`},
		{"/api/v1/top?metric=gpu_util&agg=avg&order=asc&k=3&since=1h", 200, `"uuid":"GPU-`},
		{"/api/v1/silent?lookback=1h&silent=2m", 200, `"last_seen"`},
		{"/api/v1/stragglers?since=1h&ratio=0.5", 200, `[`},
		{"/api/v1/events?by=node&since=1h", 200, `[`},
		{"/api/v1/jobs?since=1h", 200, `"gpu_hours"`},
		{"/api/v1/series?metric=nope", 400, `metric: \"nope\" is not a gpu_samples metric`},
		{"/api/v1/series?metric=throttle_reasons&agg=share&reason=sw_thermal&step=1m&since=15m", 200, `"points"`},
		{"/api/v1/series?metric=throttle_reasons&agg=share&reason=hot&since=15m", 400, `reason: \"hot\" is not a clock-event reason`},
		{"/api/v1/series?metric=gpu_util&agg=share&reason=sw_thermal&since=15m", 400, `agg: \"share\" does not apply to gauge gpu_util`},
		{"/api/v1/series?metric=gpu_util&by=datacenter", 400, `by: \"datacenter\"`},
		{"/api/v1/series?metric=gpu_util&step=soon", 400, `step: \"soon\" is not a positive duration`},
		{"/api/v1/top?order=sideways", 400, `order: \"sideways\"`},
		{"/api/v1/top?metric=temp_gpu_c&filter=node=node-00001&k=50&since=1h", 200, `"node":"node-00001"`},
		{"/api/v1/top?filter=datacenter=x", 400, `filter: \"datacenter=x\"`},
		{"/api/v1/stragglers?ratio=2", 400, `ratio: 2: must be between 0 and 1`},
		{"/api/v1/summary?from=yesterday", 400, `from: \"yesterday\" is not an RFC 3339 time`},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) {
				t.Fatalf("%d %s; want %d with %s", resp.StatusCode, body, c.code, c.want)
			}
			if !json.Valid(body) {
				t.Errorf("body is not JSON: %s", body)
			}
		})
	}
}
