package query_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/query/failseed"
)

// failureFleet is failseed's fleet on a migrated chDB database, as of the returned instant.
func failureFleet(t *testing.T) (store.Store, time.Time) {
	t.Helper()
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	if err := failseed.CheckCatalog(ctx, st); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	if err := failseed.Write(ctx, st, at); err != nil {
		t.Fatal(err)
	}
	return st, at
}

// The three failure reports answer exactly what the seeded history says: the state of every GPU
// seen in the week (the decommissioned one, the MIG instance and an event after the instant left
// out), the drain list in severity order with when each GPU entered its state and the job on it,
// and the jobs that ended after a fatal event by its cause.
func TestFailureReports(t *testing.T) {
	st, at := failureFleet(t)
	ctx := context.Background()

	t.Run("health", func(t *testing.T) {
		r, err := query.Health(ctx, st, query.FleetWindow{At: at})
		if err != nil {
			t.Fatal(err)
		}
		want := query.HealthCounts{GPUs: 8, Healthy: 2, Degraded: 1, RestartApp: 1, ResetGPU: 1, RebootNode: 1, Service: 1, StoppedReporting: 1}
		if r.Fleet != want {
			t.Errorf("fleet %+v, want %+v", r.Fleet, want)
		}
		east := query.HealthCounts{GPUs: 6, Healthy: 1, Degraded: 1, RestartApp: 1, ResetGPU: 1, Service: 1, StoppedReporting: 1}
		west := query.HealthCounts{GPUs: 2, Healthy: 1, RebootNode: 1}
		if got, want := fmt.Sprint(r.ByCluster), fmt.Sprint([]query.HealthGroup{{Key: "east", HealthCounts: east}, {Key: "west", HealthCounts: west}}); got != want {
			t.Errorf("by cluster %s, want %s", got, want)
		}
		if got, want := fmt.Sprint(r.ByModel), fmt.Sprint([]query.HealthGroup{{Key: "A100", HealthCounts: west}, {Key: "H100", HealthCounts: east}}); got != want {
			t.Errorf("by model %s, want %s", got, want)
		}
		// A filter narrows the fleet; a value that matches nothing (or tries to be SQL) is an empty fleet.
		r, err = query.Health(ctx, st, query.FleetWindow{At: at, Filters: []query.Filter{{Dim: query.Node, Values: []string{"w-0"}}}})
		if err != nil || r.Fleet != west {
			t.Errorf("node w-0: %+v, %v; want %+v", r, err, west)
		}
		r, err = query.Health(ctx, st, query.FleetWindow{At: at, Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"east' OR 1=1 --"}}}})
		if err != nil || r.Fleet != (query.HealthCounts{}) || len(r.ByCluster) != 0 {
			t.Errorf("hostile cluster: %+v, %v; want no GPUs", r, err)
		}
	})

	t.Run("drain", func(t *testing.T) {
		r, err := query.Drain(ctx, st, query.FleetWindow{At: at}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(failseed.DrainLines(r, at), "\n"), strings.Join(failseed.Drain, "\n"); got != want || r.Truncated {
			t.Errorf("drain list (truncated %v):\n%s\nwant:\n%s", r.Truncated, got, want)
		}
		for _, g := range r.GPUs {
			switch g.UUID {
			case "GPU-e-0-2":
				if g.Reason != "xid 95, after agent restart" {
					t.Errorf("reset_gpu reason %q, want the newest event's", g.Reason)
				}
			case "GPU-e-1-0":
				if want := "no sample since " + at.Add(failseed.LastSample).Format(time.RFC3339) + " (10m10s before"; !strings.HasPrefix(g.Reason, want) ||
					!strings.HasSuffix(g.Reason, "last state healthy") {
					t.Errorf("stopped reason %q, want %q… last state healthy", g.Reason, want)
				}
			}
		}
		// Cut at the limit, and says so.
		r, err = query.Drain(ctx, st, query.FleetWindow{At: at}, 2)
		if err != nil || len(r.GPUs) != 2 || !r.Truncated || r.GPUs[1].UUID != "GPU-w-0-0" {
			t.Errorf("limit 2: %+v, %v", r, err)
		}
		// Silent 15m: the GPU quiet for 10m10s is reporting again; a look-back of a day keeps the
		// decommissioned GPU out, one of 9 days lists it first: stopped reporting in service.
		r, err = query.Drain(ctx, st, query.FleetWindow{At: at, Silent: 15 * time.Minute}, 100)
		if err != nil || len(r.GPUs) != 5 {
			t.Errorf("silent 15m: %v, %v; want 5 GPUs", failseed.DrainLines(r, at), err)
		}
		r, err = query.Drain(ctx, st, query.FleetWindow{At: at, Lookback: 9 * 24 * time.Hour}, 100)
		if err != nil || len(r.GPUs) != 7 || r.GPUs[0].UUID != "GPU-d-0-0" || r.GPUs[0].Action != query.ActionStoppedReporting ||
			r.GPUs[0].Severity != 5 || !strings.HasSuffix(r.GPUs[0].Reason, "last state service: sent for repair") {
			t.Errorf("lookback 9 days: %v, %v", r, err)
		}
	})

	t.Run("interruptions", func(t *testing.T) {
		r, err := query.Interruptions(ctx, st, query.JobWindow{From: at.Add(-time.Hour), To: at, At: at})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(failseed.CauseLines(r), "\n"), strings.Join(failseed.Interruptions, "\n"); got != want {
			t.Errorf("causes:\n%s\nwant:\n%s", got, want)
		}
		if r.JobsEnded != failseed.JobsEnded || r.Interruptions != 5 || r.Causes[0].Share != 0.4 || r.Causes[0].ExampleUUID != "GPU-e-1-0" {
			t.Errorf("ended %d, interrupted %d, first %+v", r.JobsEnded, r.Interruptions, r.Causes[0])
		}
		// Within 5 s: only the events at most 5 s before a job's last sample or after it count —
		// j-b's DBE (after), j-f's XID 13 (1 s before) and j-i's fell off the bus (5 s before).
		r, err = query.Interruptions(ctx, st, query.JobWindow{From: at.Add(-time.Hour), To: at, At: at, Within: 5 * time.Second})
		if got, want := strings.Join(failseed.CauseLines(r), ","), "application 1 j-f xid 13,gpu_memory 1 j-b xid 48,pcie_bus 1 j-i fell_off_bus"; err != nil || got != want {
			t.Errorf("within 5s: %s, %v; want %s", got, err, want)
		}
		// A window with no ended job: an empty table, still a report.
		r, err = query.Interruptions(ctx, st, query.JobWindow{From: at.Add(-3 * time.Hour), To: at.Add(-2 * time.Hour), At: at})
		if err != nil || r.JobsEnded != 0 || len(r.Causes) != 0 {
			t.Errorf("empty window: %+v, %v", r, err)
		}
		r, err = query.Interruptions(ctx, st, query.JobWindow{From: at.Add(-time.Hour), To: at, At: at,
			Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"west"}}}})
		if got := strings.Join(failseed.CauseLines(r), ","); err != nil || got != "application 1 j-f xid 13" || r.JobsEnded != 2 {
			t.Errorf("west: %s, %d ended, %v", got, r.JobsEnded, err)
		}
	})
}

// Bad parameters are ErrInvalid naming the field.
func TestFailureReportsValidate(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		err  error
		says string
	}{
		{"lookback short", sqlErr(query.HealthSQL("db", query.FleetWindow{At: at, Lookback: time.Minute})), "lookback: 1m0s"},
		{"lookback long", sqlErr(query.DrainSQL("db", query.FleetWindow{At: at, Lookback: 100 * 24 * time.Hour}, 10)), "lookback: 2400h0m0s"},
		{"silent short", sqlErr(query.DrainSQL("db", query.FleetWindow{At: at, Silent: time.Second}, 10)), "silent: 1s"},
		{"silent over lookback", sqlErr(query.DrainSQL("db", query.FleetWindow{At: at, Lookback: time.Hour, Silent: 2 * time.Hour}, 10)), "silent: 2h0m0s"},
		{"no instant", sqlErr(query.HealthSQL("db", query.FleetWindow{})), "at: no time given"},
		{"limit 0", sqlErr(query.DrainSQL("db", query.FleetWindow{At: at}, 0)), "limit: 0: between 1 and 10000"},
		{"limit high", sqlErr(query.DrainSQL("db", query.FleetWindow{At: at}, 10_001)), "limit: 10001"},
		{"filter on job", sqlErr(query.HealthSQL("db", query.FleetWindow{At: at, Filters: []query.Filter{{Dim: query.Job, Values: []string{"j"}}}})), "filters: job"},
		{"filter unknown", sqlErr(query.HealthSQL("db", query.FleetWindow{At: at, Filters: []query.Filter{{Dim: "1=1; DROP", Values: []string{"j"}}}})), "filters: \"1=1; DROP\""},
		{"within 0.5s", sqlErr(query.InterruptionsSQL("db", query.JobWindow{From: at.Add(-time.Hour), To: at, At: at, Within: 1500 * time.Millisecond})), "within: 1.5s"},
		{"within a week", sqlErr(query.InterruptionsSQL("db", query.JobWindow{From: at.Add(-time.Hour), To: at, At: at, Within: 7 * 24 * time.Hour})), "within: 168h"},
		{"idle short", sqlErr(query.InterruptionsSQL("db", query.JobWindow{From: at.Add(-time.Hour), To: at, At: at, Idle: time.Second})), "idle: 1s"},
		{"window reversed", sqlErr(query.InterruptionsSQL("db", query.JobWindow{From: at, To: at.Add(-time.Hour), At: at})), "from: "},
	} {
		if !errors.Is(c.err, query.ErrInvalid) || !strings.Contains(c.err.Error(), c.says) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", c.name, c.err, c.says)
		}
	}
}

func sqlErr(_ string, _ store.Params, err error) error { return err }

// A report over the reader's max_result_rows is a bad request, not a partial answer.
func TestFailureReportsCapped(t *testing.T) {
	st, at := failureFleet(t)
	rd := limitedReader(t, st, 3)
	_, err := query.Drain(context.Background(), rd, query.FleetWindow{At: at}, 100)
	if !errors.Is(err, query.ErrInvalid) || !strings.Contains(err.Error(), "drain list") || !strings.Contains(err.Error(), "more than 3 points") {
		t.Errorf("drain over a 3-row cap: %v", err)
	}
	r, err := query.Drain(context.Background(), rd, query.FleetWindow{At: at}, 2)
	if err != nil || len(r.GPUs) != 2 || !r.Truncated {
		t.Errorf("drain limit 2 under a 3-row cap: %+v, %v", r, err)
	}
}
