package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// namesField is how a 400's error starts: the parameter (or query field) that is wrong.
var namesField = regexp.MustCompile(`^(invalid query: )?[a-z_]+: `)

var fuzzEndpoints = []string{"summary", "series", "top", "silent", "stragglers", "events", "jobs", "sql"}

// Whatever query string a client sends, the API answers 200, 400 (a bad parameter) or 502 (the
// store failed), with a JSON body: never a 500 or a panic. The store is the real engine over a small
// fleet, opened once for the whole run.
func FuzzQueryString(f *testing.F) {
	st := testenv.CHDB(f)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		f.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Minute) // the seed writer checks times against the wall clock
	if _, err := (seed.Fleet{Seed: 1, Nodes: 1, GPUsPerNode: 2, Clusters: []string{"c1"}, From: now.Add(-5 * time.Minute),
		To: now, Step: 30 * time.Second}).Write(ctx, st); err != nil {
		f.Fatal(err)
	}
	h := httpapi.Handler(st, func() time.Time { return now })

	for i, q := range []string{
		"since=1h",
		"metric=gpu_util&agg=p99&step=1m&since=15m",
		"metric=temp_gpu_c&agg=max&by=node&filter=node=node-00001&since=15m",
		"metric=gpu_util&agg=avg&order=asc&k=3&since=1h",
		"lookback=1h&silent=2m",
		"since=1h&ratio=0.5",
		"by=node&since=1h",
		"since=1h",
		"q=SELECT+count()+FROM+gpu_samples",
	} {
		f.Add(uint8(i), q)
	}
	for _, q := range []string{"metric=nope", "by=datacenter", "step=soon", "order=sideways", "filter=datacenter=x",
		"ratio=2", "ratio=NaN", "k=-1", "k=1e300", "from=yesterday", "from=2999-01-01T13:00:00Z", "since=2562047h",
		"to=0001-01-01T00:00:00Z&since=1h", "step=1ns", "step=1s&since=8760h", "filter=node", "%zz", "by=node,,gpu",
		"q=SELECT+1;+DROP+TABLE+gpu_samples", "q=", "metric=energy_mj&agg=rate&fill=true"} {
		f.Add(uint8(1), q)
		f.Add(uint8(2), q)
	}
	f.Fuzz(func(t *testing.T, ep uint8, rawQuery string) {
		path := "/api/v1/" + fuzzEndpoints[int(ep)%len(fuzzEndpoints)]
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.URL.RawQuery = rawQuery // as the server hands it over: not necessarily well-formed
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusBadGateway:
		default:
			t.Fatalf("%s?%s: %d %s", path, rawQuery, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s?%s: %d with a body that is not JSON: %s", path, rawQuery, w.Code, w.Body)
		}
		if w.Code == http.StatusBadRequest {
			var e struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !namesField.MatchString(e.Error) {
				t.Fatalf("%s?%s: 400 %s does not name the parameter", path, rawQuery, w.Body)
			}
		}
	})
}
