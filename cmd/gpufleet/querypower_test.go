package main_test

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// gpufleet query --report power prints each cluster's power per second as the raw rows give it
// (each GPU's mean in the second, summed), here on what a demo at 2 Hz streamed through its broker
// and ingest, in every second its agent read twice; in the first and last seconds, which it read
// once, each reading counts for the half second it stands for (docs/power.md). A window the query
// refuses is a usage error.
func TestQueryReportPower(t *testing.T) {
	lib := testenv.LibCHDB(t)
	env := []string{"GPUFLEET_LIBCHDB=" + lib}
	data := filepath.Join(t.TempDir(), "data")
	if r := run(t, env, "demo", "--for", "4s", "--gpus", "16", "--interval", "500ms", "--data-dir", data, "--http", "127.0.0.1:0"); r.code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	dsn := "chdb://" + data
	r := run(t, env, "query", "--clickhouse", dsn, "--report", "power", "--since", "10m")
	var got struct {
		Series []struct {
			Labels map[string]string `json:"labels"`
			Points []struct {
				T     time.Time `json:"t"`
				Value *float64  `json:"value"`
			} `json:"points"`
		} `json:"series"`
		Table string `json:"table"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || len(got.Series) != 1 || got.Table != "cluster_power_1s" {
		t.Fatalf("exit %d (%v): %s %s", r.code, err, r.stdout, r.stderr)
	}
	r = run(t, env, "query", "--clickhouse", dsn, "--since", "10m", "--sql",
		"SELECT toString(s) AS s, sum(m) AS w, sum(h) AS half, min(n) = 2 AND max(n) = 2 AS full FROM (SELECT toStartOfSecond(time) AS s, uuid, "+
			"avg(power_w) AS m, sum(power_w) / 2 AS h, count() AS n FROM gpufleet.gpu_samples "+
			"WHERE power_w IS NOT NULL GROUP BY s, uuid) GROUP BY s ORDER BY s")
	var raw struct{ Rows [][]any }
	if err := json.Unmarshal([]byte(r.stdout), &raw); r.code != 0 || err != nil {
		t.Fatalf("--sql: exit %d (%v): %s %s", r.code, err, r.stdout, r.stderr)
	}
	want := map[string]float64{}
	full := 0
	for _, row := range raw.Rows {
		w := row[1].(float64)
		if row[3] != float64(1) { // JSON numbers; a Bool column prints 1 or 0 here
			w = row[2].(float64)
		} else {
			full++
		}
		want[strings.TrimSuffix(row[0].(string), ".000")] = w
	}
	points := got.Series[0].Points
	if len(points) != len(want) || full < 2 {
		t.Fatalf("%d points, the raw rows have %d seconds, %d read twice by every GPU (want at least 2)", len(points), len(want), full)
	}
	for _, p := range points {
		w, ok := want[p.T.UTC().Format(time.DateTime)]
		if !ok || p.Value == nil || math.Abs(*p.Value-w) > 1e-6*w {
			t.Errorf("%s: %v W, the raw rows say %v", p.T, powerValue(p.Value), w)
		}
	}
	if r := run(t, env, "query", "--clickhouse", dsn, "--report", "power", "--since", "-1h"); r.code != 2 || !strings.Contains(r.stderr, "--report power --since -1h0m0s") {
		t.Errorf("--since -1h: exit %d, %s", r.code, r.stderr)
	}
}

func powerValue(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(*v)
}
