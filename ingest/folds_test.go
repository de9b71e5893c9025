package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// foldConfig is the rig's config with gpu_1m and gpu_1h folded by ingest.
func (r *rig) foldConfig(group string, age time.Duration) ingest.Config {
	c := r.config(group)
	c.Fold, c.FoldAge = true, age
	return c
}

// checkFolded fails t unless every gpu_samples row is marked folded into both levels and gpu_1m and
// gpu_1h hold rows (checkRollups then says they count each sample once).
func (r *rig) checkFolded(t *testing.T) {
	t.Helper()
	db := r.st.Database()
	res, err := r.st.Query(context.Background(), fmt.Sprintf("SELECT (SELECT countIf(%s != %d) FROM %s), (SELECT count() FROM %s), "+
		"(SELECT count() FROM %s), (SELECT count() FROM %s)", schema.FoldedColumn, schema.FoldBitGPU1m|schema.FoldBitGPU1h,
		store.Table(db, schema.GPUSamples), store.Table(db, schema.GPU1m), store.Table(db, schema.GPU1h), store.Table(db, schema.IngestFolds)))
	if err != nil {
		t.Fatal(err)
	}
	unfolded, rows, hours, folds := res.Rows[0][0].(uint64), res.Rows[0][1].(uint64), res.Rows[0][2].(uint64), res.Rows[0][3].(uint64)
	if unfolded != 0 {
		t.Errorf("%d gpu_samples rows are not marked folded into gpu_1m and gpu_1h", unfolded)
	}
	if rows == 0 || hours == 0 || folds == 0 {
		t.Errorf("gpu_1m holds %d rows and gpu_1h %d from %d recorded folds: nothing was folded", rows, hours, folds)
	}
}

// replayFolded runs worker B, folding with other batch and fold settings than the crashed worker a,
// until the two have committed msgs messages, and fails t unless gpu_samples and every rollup
// (gpu_1m from the folds) hold want rows once.
func (r *rig) replayFolded(t *testing.T, ctx context.Context, a *ingest.Ingester, msgs, want uint64) *ingest.Ingester {
	t.Helper()
	cfgB := r.foldConfig("g", 2*time.Second)
	cfgB.BatchRows, cfgB.BatchAge = 100_000, 100*time.Millisecond
	b, err := ingest.New(cfgB)
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopB := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }()
	waitFor(t, time.Minute, "worker B to commit the rest", func() bool { return a.Stats().Messages+b.Stats().Messages >= msgs })
	stopB()
	if err := <-done; err != nil {
		t.Fatalf("worker B: %v", err)
	}
	rows, distinct := r.stored(t)
	if rows != want || distinct != want {
		t.Fatalf("gpu_samples holds %d rows (%d distinct), want exactly %d", rows, distinct, want)
	}
	r.checkRollups(t)
	r.checkFolded(t)
	return b
}

// A folding worker stopped after inserting several batches of a fold and before the fold was
// flushed: nothing of the partitions was committed, so the next worker replays every one of those
// batches. Each is cut again at its recorded range (looked up after each one replayed: a replay
// now spans many), so gpu_samples holds each row once, and the new folds count each once in gpu_1m.
func TestFoldKillMidFold(t *testing.T) {
	r := newRig(t, 2)
	want := r.produce(t, 6, 1, 10) // 60 messages, 480 rows
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfgA := r.foldConfig("g", time.Minute) // no fold is due before the crash
	cfgA.BatchRows = 24                    // three messages per batch
	a, err := ingest.New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	var flushes atomic.Int32
	ingest.SetCrashAfterInsert(a, func() bool { return flushes.Add(1) == 6 })
	if err := a.Run(ctx); !errors.Is(err, ingest.ErrCrashed) {
		t.Fatalf("worker A: %v, want the crash hook's error", err)
	}
	if st := a.Stats(); st.Messages != 0 || st.Folds != 0 {
		t.Fatalf("worker A committed %d messages in %d folds before its first fold was due", st.Messages, st.Folds)
	}
	rowsA, _ := r.stored(t)
	if rowsA < 5*24 {
		t.Fatalf("worker A inserted %d rows: fewer than five batches to replay", rowsA)
	}
	t.Logf("worker A inserted %d rows in batches, committed none", rowsA)
	r.replayFolded(t, ctx, a, 60, want)
}

// A folding worker stopped after a fold's inserts into gpu_1m and gpu_1h (through its feed) and
// before its commit: the next worker replays the fold's batches, finds the fold's recorded range,
// flushes exactly there, and its inserts repeat their tokens, so both count the fold's samples
// once (the feed's view drops the repeated block in gpu_1h as a view on gpu_samples does).
func TestFoldKillAfterFoldInsert(t *testing.T) {
	r := newRig(t, 2)
	want := r.produce(t, 6, 1, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfgA := r.foldConfig("g", time.Second)
	cfgA.BatchRows = 24
	a, err := ingest.New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	ingest.SetCrashAfterFold(a, func() bool { return true })
	if err := a.Run(ctx); !errors.Is(err, ingest.ErrCrashed) {
		t.Fatalf("worker A: %v, want the crash hook's error", err)
	}
	res, err := r.st.Query(ctx, "SELECT (SELECT sum(samples) FROM "+store.Table(r.st.Database(), schema.GPU1m)+
		"), (SELECT sum(samples) FROM "+store.Table(r.st.Database(), schema.GPU1h)+")")
	if err != nil {
		t.Fatal(err)
	}
	folded, hours := res.Rows[0][0].(uint64), res.Rows[0][1].(uint64)
	if folded == 0 || hours != folded {
		t.Fatalf("worker A stopped with %d samples folded into gpu_1m and %d into gpu_1h: the fold's rows of both must be in", folded, hours)
	}
	t.Logf("worker A folded %d samples into gpu_1m and gpu_1h, committed none", folded)
	r.replayFolded(t, ctx, a, 60, want)
}

// A folding worker that stops gracefully flushes its folds and commits them: a second worker,
// started on the same group, has nothing to replay, and every rollup counts each row once.
func TestFoldGracefulStopCommits(t *testing.T) {
	r := newRig(t, 2)
	want := r.produce(t, 6, 1, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := ingest.New(r.foldConfig("g", time.Minute)) // the stop, not the age, flushes the folds
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	waitFor(t, time.Minute, "worker A to insert every row", func() bool { return a.Stats().Samples >= want })
	if st := a.Stats(); st.Messages != 0 {
		t.Fatalf("worker A counted %d messages committed before any fold was flushed", st.Messages)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("worker A: %v", err)
	}
	if st := a.Stats(); st.Messages != 60 || st.Folds == 0 {
		t.Fatalf("worker A committed %d of 60 messages in %d folds at its stop", st.Messages, st.Folds)
	}
	rows, distinct := r.stored(t)
	if rows != want || distinct != want {
		t.Fatalf("gpu_samples holds %d rows (%d distinct), want exactly %d", rows, distinct, want)
	}
	r.checkRollups(t)
	r.checkFolded(t)
	// B joins the group and fetches from the committed offsets: the end of both partitions.
	b, err := ingest.New(r.foldConfig("g", time.Second))
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopB := context.WithCancel(ctx)
	go func() { done <- b.Run(bctx) }()
	waitFor(t, time.Minute, "worker B to join the group", func() bool { return b.Stats().Rebalances > 0 })
	time.Sleep(2 * time.Second)
	stopB()
	if err := <-done; err != nil {
		t.Fatalf("worker B: %v", err)
	}
	if st := b.Stats(); st.Fetched != 0 {
		t.Errorf("worker B fetched %d messages: A's stop left them uncommitted", st.Fetched)
	}
}
