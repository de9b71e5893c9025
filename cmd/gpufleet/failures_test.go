package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/query/failseed"
)

// The failure reports through the built binary on a chDB directory holding failseed's fleet as
// of the minute the test starts: the drain list and the root-cause table as the query layer
// answers them, and bad values exiting 2 with the flag named.
func TestQueryFailureReports(t *testing.T) {
	lib := testenv.LibCHDB(t)
	env := []string{"GPUFLEET_LIBCHDB=" + lib}
	data := t.TempDir()
	dsn := "chdb://" + data
	if r := run(t, env, "migrate", "--clickhouse", dsn); r.code != 0 {
		t.Fatalf("migrate: %s", r.stderr)
	}
	// Seeded in this process, then closed: one process holds a chDB directory at a time.
	st, err := chdb.Open(data, "gpufleet", lib)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Minute)
	if err := failseed.CheckCatalog(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := failseed.Write(ctx, st, at); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// --silent-after 5m: the GPU quiet for 90 s stays reporting, and the jobs running at the seeded
	// instant stay running, for the 3 minutes the test may take to get here.
	r := run(t, env, "query", "--clickhouse", dsn, "--report", "drain", "--silent-after", "5m")
	var drain query.DrainReport
	if err := json.Unmarshal([]byte(r.stdout), &drain); r.code != 0 || err != nil {
		t.Fatalf("drain: exit %d, %v, %s%s", r.code, err, r.stdout, r.stderr)
	}
	if got, want := strings.Join(failseed.DrainLines(&drain, at), "\n"), strings.Join(failseed.Drain, "\n"); got != want {
		t.Errorf("drain:\n%s\nwant:\n%s", got, want)
	}

	r = run(t, env, "query", "--clickhouse", dsn, "--report", "interruptions", "--since", "1h", "--within", "300s", "--silent-after", "5m")
	var intr query.InterruptionReport
	if err := json.Unmarshal([]byte(r.stdout), &intr); r.code != 0 || err != nil {
		t.Fatalf("interruptions: exit %d, %v, %s%s", r.code, err, r.stdout, r.stderr)
	}
	if got, want := strings.Join(failseed.CauseLines(&intr), "\n"), strings.Join(failseed.Interruptions, "\n"); got != want || intr.JobsEnded != failseed.JobsEnded {
		t.Errorf("interruptions (%d ended):\n%s\nwant (%d):\n%s", intr.JobsEnded, got, failseed.JobsEnded, want)
	}

	r = run(t, env, "query", "--clickhouse", dsn, "--report", "health", "--silent-after", "5m")
	var health query.HealthReport
	if err := json.Unmarshal([]byte(r.stdout), &health); r.code != 0 || err != nil || health.Fleet.GPUs != 8 || health.Fleet.StoppedReporting != 1 {
		t.Errorf("health: exit %d, %v, %s%s", r.code, err, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--report", "drain", "--limit", "0"}, "--limit: 0: between 1 and 10000"},
		{[]string{"--report", "drain", "--silent-after", "1s"}, "--silent-after: 1s: at least 1m"},
		{[]string{"--report", "health", "--lookback", "5m"}, "--lookback: 5m0s: between 1h"},
		{[]string{"--report", "interruptions", "--within", "1500ms"}, "--within: 1.5s: whole seconds"},
		{[]string{"--within", "30s"}, "--within applies only to --report, not the summary"},
	} {
		r := run(t, env, append([]string{"query", "--clickhouse", dsn}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.says) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, %q; want 2 and one line saying %q", c.args, r.code, r.stderr, c.says)
		}
	}
}
