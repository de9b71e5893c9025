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

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/migrate"
	"github.com/gpufleet/gpufleet/query/httpapi"
	"github.com/gpufleet/gpufleet/wire"
	"github.com/gpufleet/gpufleet/wire/wirepb"
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
	b := ingest.NewSampleBuilder()
	var dec wire.SampleDecoder
	for i := range 2 {
		n := sim.NewNode(1, "c1", i, 8)
		for s := range 30 {
			batch := &wirepb.SampleBatch{AgentId: n.Name, Seq: uint64(s + 1), Cluster: "c1", Node: n.Name}
			n.Sample(now.Add(-10*time.Minute+time.Duration(s)*10*time.Second), batch, nil)
			data, _ := wire.EncodeSamples(batch)
			sb, err := dec.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Add(sb, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Insert(ctx, "gpu_samples", b.Block(), ""); err != nil {
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
		{"/api/v1/series?metric=gpu_util&by=rack", 400, `by: \"rack\"`},
		{"/api/v1/series?metric=gpu_util&step=soon", 400, `step: \"soon\" is not a positive duration`},
		{"/api/v1/top?order=sideways", 400, `order: \"sideways\"`},
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
