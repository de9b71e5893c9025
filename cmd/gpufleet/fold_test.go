package main_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// ingest --fold: what simulate sent is stored once, every raw row marked folded, and gpu_1m, made
// by ingest's folds and not its view, counts each sample once, reaching the database at the stop
// at the latest; the fold metrics count the folds.
func TestIngestFold(t *testing.T) {
	broker := testenv.NewKafka(t)
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir() + "?database=folded"
	env := []string{"GPUFLEET_LIBCHDB=" + lib, "GPUFLEET_BROKERS=" + broker.Addr, "GPUFLEET_CLICKHOUSE=" + dsn}
	if r := run(t, env, "migrate"); r.code != 0 {
		t.Fatalf("migrate: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, env, "topics", "--partitions", "2"); r.code != 0 {
		t.Fatalf("topics: exit %d %s", r.code, r.stderr)
	}
	r := run(t, append(env, "GPUFLEET_METRICS_ADDR="), "simulate", "--gpus", "32", "--gpus-per-node", "8", "--interval", "100ms", "--for", "2s", "--seed", "5")
	stopped := regexp.MustCompile(`msg=stopped samples=(\d+) batches=(\d+) events=(\d+)`).FindStringSubmatch(r.stderr)
	if r.code != 0 || stopped == nil {
		t.Fatalf("simulate: exit %d\n%s", r.code, r.stderr)
	}
	samples, _ := strconv.Atoi(stopped[1])

	d := startDaemon(t, append(env, "GPUFLEET_METRICS_ADDR=127.0.0.1:0"), regexp.MustCompile(`msg="serving metrics"`),
		"ingest", "--fold", "--fold-age", "1s", "--batch-age", "200ms")
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(d.first)
	if addr == nil {
		t.Fatalf("no metrics address in %q", d.first)
	}
	var m map[string]float64
	for guard := time.Now().Add(2 * time.Minute); ; { // a guard against a hang, not a timed assertion
		m = scrape(t, "http://"+addr[1]+"/metrics")
		if m["gpufleet_ingest_messages_committed_total"] >= m["gpufleet_ingest_messages_fetched_total"] && m["gpufleet_ingest_sample_rows_total"] >= float64(samples) {
			break
		}
		if time.Now().After(guard) {
			t.Fatalf("ingest --fold did not commit %d samples:\n%s", samples, d.stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m["gpufleet_ingest_folds_total"] < 1 {
		t.Errorf("gpufleet_ingest_folds_total = %v after every message was committed", m["gpufleet_ingest_folds_total"])
	}
	d.stop()

	r = run(t, env, "query", "--since", "3h", "--sql", "SELECT (SELECT count() FROM gpu_samples WHERE $__timeFilter(time)), "+
		"(SELECT countIf(folded = 3) FROM gpu_samples WHERE $__timeFilter(time)), (SELECT sum(samples) FROM gpu_1m WHERE $__timeFilter(t)), "+
		"(SELECT sum(samples) FROM gpu_1h WHERE $__timeFilter(t))")
	var out struct {
		Rows [][]any `json:"rows"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil || len(out.Rows) != 1 {
		t.Fatalf("query: exit %d, %s (%v)\n%s", r.code, r.stdout, err, r.stderr)
	}
	want := fmt.Sprint(samples)
	for i, what := range []string{"gpu_samples rows", "rows marked folded into gpu_1m and gpu_1h", "gpu_1m samples", "gpu_1h samples"} {
		if got := fmt.Sprint(out.Rows[0][i]); got != want {
			t.Errorf("%s: %s, want %s (what simulate sent)", what, got, want)
		}
	}
}
