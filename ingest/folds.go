package ingest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Folding gpu_1m and gpu_1h in ingest (Config.Fold), exactly once. A samples partition's batches
// are inserted as always (their ranges recorded, intents.go), marked folded so the levels' views
// leave them out, and their rows folded into the partition's open fold (a foldSet: a levelFold per
// level, fold.go). A fold covers a run of whole
// batches [first, last]; when it is FoldAge old (or holds too many rows, or the generation ends) it
// is flushed:
//
//  1. record [first, last] in ingest_folds;
//  2. insert its rows of each level, with the token "table/topic/partition/first-last" (gpu_1h's
//     into its feed, gpu_1h_fold, which writes them into gpu_1h under that token);
//  3. commit offset last+1.
//
// The partition's offsets are committed at fold boundaries only, so a worker killed anywhere
// leaves the committed offset at the first offset of a fold. The next owner replays from there:
// every batch of the fold was recorded before its insert, and is cut again at its recorded range
// (the lookup is made again after each replayed range, track in batch.go), so the raw inserts
// repeat their tokens; the same rows fold again, and if the fold's range was recorded the replay
// flushes at its last offset and nowhere else, so the fold's inserts repeat their tokens too. A fold
// not recorded was not inserted, and the replay may end it anywhere.

// openFold is one samples partition's fold in progress, owned by the inserter.
type openFold struct {
	first, last int64
	started     time.Time
	target      int64 // the last offset of the recorded fold being replayed, or -1
	msgs        uint64
	rows        *foldSet
}

// foldRange names a fold: its partition and offsets.
func foldRange(k partKey, first, last int64) string {
	return fmt.Sprintf("%s/%d/%d-%d", k.topic, k.partition, first, last)
}

// foldToken is the deduplication token of a fold's insert into table.
func foldToken(table string, k partKey, first, last int64) string {
	return table + "/" + foldRange(k, first, last)
}

// folding reports whether p's rows are folded by ingest.
func (in *Ingester) folding(p *partBatch) bool { return in.cfg.Fold && p.samples != nil }

// foldBatch folds an inserted batch into its partition's fold, opening one (and looking up a
// recorded fold that starts there) at the partition's first batch since the last flush.
func (in *Ingester) foldBatch(ctx context.Context, p *partBatch) error {
	f := in.folds[p.key]
	if f == nil {
		target, err := in.foldCovering(ctx, p.key, p.first)
		if err != nil {
			return err
		}
		f = &openFold{first: p.first, started: time.Now(), target: target, rows: in.foldRows()}
		in.folds[p.key] = f
	}
	f.rows.add(p.samples)
	f.last = p.last
	f.msgs += uint64(p.n)
	in.foldHeld.Add(int64(p.n))
	return nil
}

// foldRows reuses the rows of a flushed fold when one is free.
func (in *Ingester) foldRows() *foldSet {
	if n := len(in.freeFolds); n > 0 {
		f := in.freeFolds[n-1]
		in.freeFolds = in.freeFolds[:n-1]
		return f
	}
	return newFoldSet()
}

// foldDue says whether the partition's fold is to be flushed now: at the recorded range's end
// while replaying one (and only there), else at FoldAge, or when all open folds together hold
// FoldRows rows or their digests FoldRows·foldValuesPerRow readings (then the largest goes), or
// always (all) when the generation ends.
func (in *Ingester) foldDue(k partKey, all bool) bool {
	f := in.folds[k]
	if f == nil {
		return false
	}
	if f.target >= 0 {
		return f.last >= f.target
	}
	return all || time.Since(f.started) >= in.cfg.FoldAge
}

// largestFold is the fold to flush when all of them together hold more than FoldRows rows or
// FoldRows·foldValuesPerRow digest readings (one replaying a recorded range ends where that range
// ends, and is not chosen).
func (in *Ingester) largestFold() (partKey, bool) {
	rows, values, best, found := 0, 0, partKey{}, false
	for k, f := range in.folds {
		rows += f.rows.Rows()
		values += f.rows.Readings()
		if f.target < 0 && (!found || f.rows.Rows() > in.folds[best].rows.Rows()) {
			best, found = k, true
		}
	}
	return best, found && (rows > in.cfg.FoldRows || values > in.cfg.FoldRows*in.foldValues)
}

// flushFold records, inserts and commits the partition's fold, and forgets it.
func (in *Ingester) flushFold(ctx context.Context, k partKey, commit committer) error {
	f := in.folds[k]
	if f.target >= 0 && f.last != f.target {
		// The batches were cut at their recorded ranges, which line up with the recorded fold; a
		// range that does not means the records are not this group's (a reused group id).
		in.log.Error("replayed fold ends past its recorded range; its rows may count twice in the rollups",
			slog.String("topic", k.topic), slog.Int("partition", k.partition), slog.Int64("first", f.first),
			slog.Int64("recorded_last", f.target), slog.Int64("last", f.last))
	}
	st := in.storeOf(k.partition)
	if f.target < 0 {
		if err := in.retry(ctx, "record fold range", func(ctx context.Context) error {
			return in.recordFold(ctx, st, k, f.first, f.last)
		}); err != nil {
			return fmt.Errorf("fold %s: %w", foldRange(k, f.first, f.last), err)
		}
	}
	for _, lf := range f.rows.levels {
		if lf.Rows() == 0 {
			continue
		}
		token := foldToken(lf.level.Table, k, f.first, f.last)
		b := lf.block()
		start := time.Now()
		if err := in.retry(ctx, "insert "+lf.table(), func(ctx context.Context) error {
			return st.Insert(ctx, lf.table(), b, token)
		}); err != nil {
			return fmt.Errorf("fold %s: %w", token, err)
		}
		in.m.foldSeconds.Observe(time.Since(start).Seconds())
		in.m.foldRows.Observe(float64(b.Rows()))
	}
	name := foldRange(k, f.first, f.last)
	if in.crashAfterFold != nil && in.crashAfterFold() {
		return errCrashed
	}
	if err := in.commitOffsets(ctx, commit, map[string]map[int]int64{k.topic: {k.partition: f.last + 1}}); err != nil {
		return fmt.Errorf("fold %s: %w", name, err)
	}
	in.nMessages.Add(f.msgs)
	in.nFolds.Add(1)
	for _, lf := range f.rows.levels {
		in.nFoldRows.Add(uint64(lf.Rows()))
	}
	in.foldHeld.Add(-int64(f.msgs))
	delete(in.folds, k)
	f.rows.reset()
	in.freeFolds = append(in.freeFolds, f.rows)
	return nil
}

// flushFolds flushes the folds due (all of them when all is set), in partition order, and then
// the largest while the folds hold more than FoldRows rows.
func (in *Ingester) flushFolds(ctx context.Context, commit committer, all bool) error {
	if len(in.folds) == 0 {
		return nil
	}
	for _, k := range sortedKeys(in.folds) {
		if in.foldDue(k, all) {
			if err := in.flushFold(ctx, k, commit); err != nil {
				return err
			}
		}
	}
	for {
		k, over := in.largestFold()
		if !over {
			return nil
		}
		if err := in.flushFold(ctx, k, commit); err != nil {
			return err
		}
	}
}

// recordFold writes a fold's range to ingest_folds.
func (in *Ingester) recordFold(ctx context.Context, st store.Store, k partKey, first, last int64) error {
	b := &store.Block{Columns: []store.Column{
		&store.ColString{ColName: "group_id", V: []string{in.cfg.GroupID}},
		&store.ColString{ColName: "topic", V: []string{k.topic}},
		&store.ColUInt32{ColName: "partition", V: []uint32{uint32(k.partition)}},
		&store.ColInt64{ColName: "first_offset", V: []int64{first}},
		&store.ColInt64{ColName: "last_offset", V: []int64{last}},
	}}
	return st.Insert(ctx, schema.IngestFolds, b, "")
}

// foldCovering returns the last offset of the recorded fold that contains offset, or -1.
func (in *Ingester) foldCovering(ctx context.Context, k partKey, offset int64) (int64, error) {
	st := in.storeOf(k.partition)
	q := fmt.Sprintf("SELECT last_offset FROM %s WHERE group_id = %s AND topic = %s AND partition = %d "+
		"AND first_offset <= %d AND last_offset >= %d ORDER BY last_offset DESC LIMIT 1",
		store.Table(st.Database(), schema.IngestFolds), store.QuoteString(in.cfg.GroupID), store.QuoteString(k.topic),
		k.partition, offset, offset)
	last := int64(-1)
	err := in.retry(ctx, "read fold ranges", func(ctx context.Context) error {
		r, err := st.Query(ctx, q)
		if err != nil {
			return err
		}
		last = -1
		if len(r.Rows) == 1 && len(r.Rows[0]) == 1 {
			if v, ok := r.Rows[0][0].(int64); ok && v >= offset {
				last = v
			}
		}
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("read %s: %w", schema.IngestFolds, err)
	}
	return last, nil
}

func sortedKeys(m map[partKey]*openFold) []partKey {
	out := make([]partKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b partKey) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	return out
}
