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
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/query/failseed"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// failureServer serves the API on a reader of failseed's fleet, its clock at the fleet's instant;
// w is the writer, for snapshots.
func failureServer(t *testing.T) (srv *httptest.Server, w store.Store, at time.Time) {
	t.Helper()
	w = testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	if err := failseed.CheckCatalog(ctx, w); err != nil {
		t.Fatal(err)
	}
	at = time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	if err := failseed.Write(ctx, w, at); err != nil {
		t.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	srv = httptest.NewServer(httpapi.Handler(rd, func() time.Time { return at }))
	t.Cleanup(srv.Close)
	return srv, w, at
}

func get(t *testing.T, srv *httptest.Server, path string, v any) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !json.Valid(body) {
		t.Fatalf("%s: body is not JSON: %s", path, body)
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return resp.StatusCode, string(body)
}

// The failure reports over HTTP are the query layer's answers on the seeded history.
func TestFailureEndpoints(t *testing.T) {
	srv, _, at := failureServer(t)

	var health query.HealthReport
	if code, body := get(t, srv, "/api/v1/health", &health); code != 200 {
		t.Fatalf("health: %d %s", code, body)
	}
	want := query.HealthCounts{GPUs: 8, Healthy: 2, Degraded: 1, RestartApp: 1, ResetGPU: 1, RebootNode: 1, Service: 1, StoppedReporting: 1}
	if health.Fleet != want || len(health.ByCluster) != 2 || len(health.ByModel) != 2 || !health.At.Equal(at) {
		t.Errorf("health %+v, want fleet %+v in 2 clusters and 2 models at %s", health, want, at)
	}

	var drain query.DrainReport
	if code, body := get(t, srv, "/api/v1/drain", &drain); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if got, want := strings.Join(failseed.DrainLines(&drain, at), "\n"), strings.Join(failseed.Drain, "\n"); got != want {
		t.Errorf("drain:\n%s\nwant:\n%s", got, want)
	}
	if code, body := get(t, srv, "/api/v1/drain?limit=1&silent=3m&lookback=24h", &drain); code != 200 ||
		len(drain.GPUs) != 1 || !drain.Truncated || drain.GPUs[0].UUID != "GPU-e-0-3" {
		t.Errorf("drain limit=1: %d %s", code, body)
	}
	drain = query.DrainReport{}
	if code, body := get(t, srv, "/api/v1/drain?filter=cluster=west|north", &drain); code != 200 ||
		len(drain.GPUs) != 1 || drain.Truncated || drain.GPUs[0].UUID != "GPU-w-0-0" {
		t.Errorf("drain west: %d %s", code, body)
	}

	var intr query.InterruptionReport
	if code, body := get(t, srv, "/api/v1/interruptions?since=1h", &intr); code != 200 {
		t.Fatalf("interruptions: %d %s", code, body)
	}
	if got, want := strings.Join(failseed.CauseLines(&intr), "\n"), strings.Join(failseed.Interruptions, "\n"); got != want || intr.JobsEnded != failseed.JobsEnded {
		t.Errorf("interruptions (%d ended):\n%s\nwant (%d ended):\n%s", intr.JobsEnded, got, failseed.JobsEnded, want)
	}
	if code, body := get(t, srv, "/api/v1/interruptions?since=1h&within=5", &intr); code != 200 || intr.Interruptions != 3 {
		t.Errorf("within=5: %d %s", code, body)
	}

	for _, c := range []struct{ path, says string }{
		{"/api/v1/health?lookback=soon", `lookback: \"soon\" is not a positive duration`},
		{"/api/v1/health?lookback=10m", `lookback: 10m0s: between 1h and 2160h0m0s`},
		{"/api/v1/health?silent=5s", `silent: 5s: at least 1m`},
		{"/api/v1/health?since=1h", `since: not a parameter of /api/v1/health; it takes lookback, silent, filter`},
		{"/api/v1/drain?limit=0", `limit: \"0\" is not a whole number from 1 to 10000`},
		{"/api/v1/drain?limit=1.5", `limit: \"1.5\"`},
		{"/api/v1/drain?limit=99999999999999999999", `limit: \"99999999999999999999\"`},
		{"/api/v1/drain?filter=job=j-a", `filters: job`},
		{"/api/v1/drain?filter=datacenter=x", `filter: \"datacenter=x\"`},
		{"/api/v1/drain?lookback=24h&silent=48h", `silent: 48h0m0s`},
		{"/api/v1/interruptions?within=-3", `within: \"-3\" is not a whole number from 1 to 86400`},
		{"/api/v1/interruptions?within=5m", `within: \"5m\"`},
		{"/api/v1/interruptions?idle=1s", `idle: 1s: between 1m and 24h`},
		{"/api/v1/interruptions?since=2400h", `since: 2400h0m0s: at most 2160h0m0s`},
		{"/api/v1/interruptions?from=yesterday", `from: \"yesterday\" is not an RFC 3339 time`},
		{"/api/v1/interruptions?limit=3", `limit: not a parameter of /api/v1/interruptions`},
	} {
		if code, body := get(t, srv, c.path, nil); code != 400 || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s; want 400 saying %s", c.path, code, body, c.says)
		}
	}
}

// Hostile values in the failure reports' parameters are inert: a 400 or a correct empty answer,
// and the tables and files as they were.
func TestFailureEndpointsHostile(t *testing.T) {
	srv, w, _ := failureServer(t)
	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	db := w.Database()
	values := []string{
		"east' OR '1'='1", "east') OR 1=1 --", "x'); DROP TABLE " + db + ".gpu_samples; --", `east\' OR 1=1`,
		"{at_ms:Int64}", "{f0:Array(String)}", "east\x00", "e-0\nSELECT 1", "' UNION ALL SELECT name, '', 0, 0 FROM system.tables --",
		"x' INTO OUTFILE '" + dir + "/victim.txt", "file('/etc/passwd')", strings.Repeat("e", 10_000), "😀", "%s%d",
	}
	for _, route := range []string{"health", "drain", "interruptions"} {
		for _, dim := range []string{"cluster", "node", "gpu", "pool"} {
			for _, v := range values {
				path := "/api/v1/" + route + "?filter=" + url.QueryEscape(dim+"="+v)
				code, body := get(t, srv, path, nil)
				switch {
				case code == 400:
				case code != 200:
					t.Errorf("%s: %d %s", path, code, body)
				case route == "health" && !strings.Contains(body, `"fleet":{"gpus":0,`):
					t.Errorf("%s: %s; want no GPUs", path, body)
				case route == "drain" && !strings.Contains(body, `"gpus":[]`):
					t.Errorf("%s: %s; want no GPUs", path, body)
				case route == "interruptions" && !strings.Contains(body, `"jobs_ended":0,"interruptions":0,"causes":[]`):
					t.Errorf("%s: %s; want no jobs", path, body)
				}
			}
		}
		// Hostile values in the other parameters are 400s.
		for _, v := range values[:4] {
			for _, name := range []string{"lookback", "silent", "limit", "within", "idle", "since"} {
				path := "/api/v1/" + route + "?" + name + "=" + url.QueryEscape(v)
				if code, body := get(t, srv, path, nil); code != 400 {
					t.Errorf("%s: %d %s; want 400", path, code, body)
				}
			}
		}
	}
	if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
		t.Fatalf("after the hostile parameters:\n%s\nwas\n%s", after, before)
	}
}
