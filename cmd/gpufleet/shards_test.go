package main_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// ingest --shards writes each partition to its shard database: what simulate sent over four
// partitions is stored once across two shards, both get some, every node's rows are on one of them,
// and the start-up line shows the shards with their passwords masked.
func TestIngestShards(t *testing.T) {
	broker := testenv.NewKafka(t)
	lib := testenv.LibCHDB(t)
	dir := t.TempDir()
	const secret = "Sh4rdS3cretPw"
	shards := []string{"chdb://" + dir + "?database=shard_a", "chdb://" + dir + "?database=shard_b&password=" + secret}
	env := []string{"GPUFLEET_LIBCHDB=" + lib, "GPUFLEET_BROKERS=" + broker.Addr}
	for _, dsn := range shards {
		if r := run(t, env, "migrate", "--clickhouse", dsn); r.code != 0 {
			t.Fatalf("migrate %s: exit %d %s", dsn, r.code, r.stderr)
		}
	}
	if r := run(t, env, "topics", "--partitions", "4"); r.code != 0 {
		t.Fatalf("topics: exit %d %s", r.code, r.stderr)
	}
	r := run(t, append(env, "GPUFLEET_METRICS_ADDR="), "simulate", "--gpus", "64", "--gpus-per-node", "8", "--interval", "100ms", "--for", "2s", "--seed", "3")
	stopped := regexp.MustCompile(`msg=stopped samples=(\d+) batches=(\d+) events=(\d+)`).FindStringSubmatch(r.stderr)
	if r.code != 0 || stopped == nil {
		t.Fatalf("simulate: exit %d\n%s", r.code, r.stderr)
	}
	samples, _ := strconv.Atoi(stopped[1])

	d := startDaemon(t, append(env, "GPUFLEET_METRICS_ADDR=127.0.0.1:0"), regexp.MustCompile(`msg="serving metrics"`),
		"ingest", "--shards", strings.Join(shards, " "), "--batch-age", "200ms")
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(d.first)
	if addr == nil {
		t.Fatalf("no metrics address in %q", d.first)
	}
	for guard := time.Now().Add(2 * time.Minute); ; { // a guard against a hang, not a timed assertion
		if m := scrape(t, "http://"+addr[1]+"/metrics"); m["gpufleet_ingest_sample_rows_total"] >= float64(samples) {
			break
		}
		if time.Now().After(guard) {
			t.Fatalf("ingest --shards did not store %d samples:\n%s", samples, d.stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stop()
	logs := d.stderr()
	if strings.Contains(logs, secret) {
		t.Errorf("ingest logged a shard's password:\n%s", logs)
	}
	if !strings.Contains(logs, "shards=") || !strings.Contains(logs, "database=shard_a") {
		t.Errorf("the start-up line does not show the shards:\n%s", logs)
	}
	if strings.Contains(logs, "partition count") {
		t.Errorf("4 partitions on 2 shards drew a warning:\n%s", logs)
	}
	// Three shards for four partitions: ingest says the shards get unequal shares.
	third := "chdb://" + dir + "?database=shard_c"
	if r := run(t, env, "migrate", "--clickhouse", third); r.code != 0 {
		t.Fatalf("migrate %s: exit %d %s", third, r.code, r.stderr)
	}
	w := startDaemon(t, append(env, "GPUFLEET_METRICS_ADDR="), regexp.MustCompile(`partition count is not a multiple of the shard count`),
		"ingest", "--shards", strings.Join(append(shards, third), " "))
	if !strings.Contains(w.first, "partitions=4 shards=3") {
		t.Errorf("warning %q, want partitions=4 shards=3", w.first)
	}
	w.stop()

	total := 0
	nodeShard := map[string]int{}
	for i, dsn := range shards {
		r := run(t, env, "query", "--clickhouse", dsn, "--sql", "SELECT node, count() AS n FROM gpu_samples WHERE $__timeFilter(time) GROUP BY node")
		var out struct {
			Rows [][]any `json:"rows"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil {
			t.Fatalf("query shard %d: exit %d, %s (%v)\n%s", i+1, r.code, r.stdout, err, r.stderr)
		}
		if len(out.Rows) == 0 {
			t.Errorf("shard %d holds no samples", i+1)
		}
		for _, row := range out.Rows {
			node := fmt.Sprint(row[0])
			if j, ok := nodeShard[node]; ok {
				t.Errorf("node %s has rows on shards %d and %d", node, j+1, i+1)
			}
			nodeShard[node] = i
			n, _ := strconv.Atoi(fmt.Sprint(row[1]))
			total += n
		}
	}
	if total != samples || len(nodeShard) != 8 {
		t.Errorf("the shards hold %d samples of %d nodes; simulate sent %d of 8", total, len(nodeShard), samples)
	}
}
