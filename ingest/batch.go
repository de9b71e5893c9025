package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// Batching and inserting overlap: the batcher decodes into fresh columns while an inserter
// goroutine writes the previous cut to ClickHouse and commits it. Events travel ahead of samples:
// the events topic's batches are cut after EventBatchAge into cuts of their own, which the
// inserter takes before any waiting samples cut, so an XID waits for at most the insert in
// flight, not behind a queue of sample batches (docs/detect.md). Each kind's cuts are inserted and
// committed in the order they were made, and a partition's batches are always of one kind, so a
// partition's offsets are committed in order. At most one cut of each kind waits behind the one
// being inserted, so at most three BatchBytes' worth of messages are held, and the batcher (and
// then the fetchers) stop when ClickHouse is slow.

type committer func(ctx context.Context, offsets map[string]map[int]int64) error

// cut is one flush: the batches of some partitions, taken out of the batcher.
type cut struct {
	parts []*partBatch
}

// batch is the generation's batcher: it decodes messages into per-partition batches and cuts
// them on size, bytes or age; when the generation ends it cuts everything, waits for the inserter to
// commit it, and returns, which lets the group rebalance.
func (in *Ingester) batch(ctx, gctx context.Context, gen *kafka.Generation, msgs <-chan kafka.Message) error {
	in.startGeneration(gen.Assignments)
	commit := func(ctx context.Context, offsets map[string]map[int]int64) error {
		return gen.CommitOffsets(offsets)
	}
	// The inserter outlives ctx: on shutdown or rebalance it still inserts and commits what was
	// cut, for at most a deadline set below.
	ictx, icancel := context.WithCancel(context.WithoutCancel(ctx))
	defer icancel()
	cuts, evCuts := make(chan *cut, 1), make(chan *cut, 1)
	inserted := make(chan error, 1)
	go func() { inserted <- in.inserter(ictx, evCuts, cuts, commit) }()
	sendOn := func(ch chan<- *cut, c *cut) error {
		if c == nil {
			return nil
		}
		select {
		case ch <- c:
			return nil
		case err := <-inserted:
			inserted <- err
			return err
		}
	}
	send := func(c *cut) error {
		ev, rest := in.splitEvents(c)
		if err := sendOn(evCuts, ev); err != nil {
			return err
		}
		return sendOn(cuts, rest)
	}

	// A range lookup blocked on ClickHouse must not keep the worker from rejoining when the
	// generation ends: the group would wait for it, then evict it.
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	defer context.AfterFunc(gctx, acancel)()
	tick := time.NewTicker(max(min(in.cfg.BatchAge, in.cfg.EventBatchAge)/4, 10*time.Millisecond))
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-gctx.Done():
			break loop
		case err := <-inserted:
			inserted <- err
			runErr = err
			break loop
		case m := <-msgs:
			c, err := in.add(actx, m)
			if err == nil {
				err = send(c)
			}
			if err != nil {
				if actx.Err() != nil && c == nil {
					// Shutting down or rebalancing mid-lookup: the message was not taken, and is read
					// again from the committed offset.
					break loop
				}
				runErr = err
				break loop
			}
		case <-tick.C:
			in.agents.expire(time.Now())
			// While a cut already waits for the inserter, an age cut would only queue behind it:
			// let the batches grow instead (up to rows or bytes), so a slow ClickHouse gets fewer,
			// larger inserts rather than more small ones. Events and samples wait apart.
			var err error
			if len(evCuts) == 0 {
				err = sendOn(evCuts, in.cutParts(in.due(false, true, in.cfg.EventBatchAge)))
			}
			if err == nil && len(cuts) == 0 {
				err = sendOn(cuts, in.cutParts(in.due(false, false, in.cfg.BatchAge)))
			}
			if err != nil {
				runErr = err
				break loop
			}
		}
	}
	// Shutting down gets shutdownFlush; a rebalance must finish within the group's rebalance
	// timeout, or the partitions move on while this worker still inserts.
	limit := shutdownFlush
	if ctx.Err() == nil {
		limit = in.cfg.SessionTimeout * 8 / 10
	}
	var abandoned atomic.Bool
	timer := time.AfterFunc(limit, func() { abandoned.Store(true); icancel() })
	defer timer.Stop()
	if runErr == nil {
		runErr = send(in.cutDue())
	}
	close(evCuts)
	close(cuts)
	err := <-inserted
	if err != nil && abandoned.Load() && !errors.Is(err, errCrashed) {
		// Out of time: what was not committed is read again by the partition's next owner, and
		// what was inserted is dropped then by its token. Lost work, not lost data: not an error
		// of the worker's.
		in.m.commitsLost.Inc()
		in.log.Warn("flush abandoned: it did not finish in time; the next owner replays the uncommitted range",
			slog.Duration("limit", limit), slog.Any("err", err))
		err = nil
		if errors.Is(runErr, context.Canceled) {
			runErr = nil
		}
	}
	if err != nil && (runErr == nil || errors.Is(err, errCrashed)) {
		runErr = err
	}
	return runErr
}

// add decodes one message into its partition's batch, or queues it for the dead-letter topic. It
// returns a cut when a batch is full or reaches the range an earlier run recorded.
func (in *Ingester) add(ctx context.Context, m kafka.Message) (*cut, error) {
	p, err := in.track(ctx, m)
	if err != nil {
		return nil, err
	}
	if err := in.decodeInto(p, m, in.cfg.Now()); err != nil {
		in.deadLetter(p, m, err)
	}
	return in.cutFor(p, m.Offset), nil
}

// track finds the message's partition batch (making it, its columns and its lag series on the
// partition's first message) and counts the message in it. On a batch's first message at an offset
// this batcher did not expect it looks up the range an earlier owner may have recorded there; an
// error of that lookup leaves the message uncounted, to be read again.
func (in *Ingester) track(ctx context.Context, m kafka.Message) (*partBatch, error) {
	k := partKey{m.Topic, m.Partition}
	p := in.parts[k]
	if p == nil {
		p = &partBatch{key: k, next: -1, target: -1}
		in.parts[k] = p
	}
	if p.samples == nil && p.events == nil {
		if m.Topic == in.cfg.SamplesTopic {
			p.samples = in.sampleCols()
			p.samples.ahead = in.cfg.MaxClockAhead
			if in.cfg.Fold {
				p.samples.foldRows(in.foldBits)
			}
		} else {
			p.events = newEventColumns()
			p.events.ahead = in.cfg.MaxClockAhead
		}
	}
	if p.lag == nil {
		p.lag = in.lags[k]
		if p.lag == nil {
			p.lag = in.m.lag.WithLabelValues(m.Topic, strconv.Itoa(m.Partition))
			in.lags[k] = p.lag
		}
	}
	p.lag.Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
	if p.n == 0 {
		if m.Offset != p.next || p.recheck {
			// First message of this partition in this generation: an earlier owner may have
			// inserted a range it did not commit; cut the same range again. After a range cut
			// again the next may have been recorded too: with Fold, offsets are committed at fold
			// boundaries only, so a replay can span many recorded batches (folds.go).
			t, replay, err := in.intentCovering(ctx, k, m.Offset)
			if err != nil {
				return nil, err
			}
			p.target, p.replay, p.recheck = t, replay, t >= 0
		}
		p.first, p.started = m.Offset, time.Now()
	}
	if m.Offset != p.next {
		in.startRun(p, m.Offset)
	}
	p.last, p.next = m.Offset, m.Offset+1
	p.n++
	p.bytes += len(m.Value)
	in.building += len(m.Value)
	return p, nil
}

// decodeInto decodes and validates the message for its topic and adds what it carries to p. The
// error says why the message is refused (it goes to the dead-letter topic); p is unchanged then.
func (in *Ingester) decodeInto(p *partBatch, m kafka.Message, now time.Time) error {
	switch {
	case p.samples != nil && m.Topic == in.cfg.SamplesTopic:
		sb, err := in.decodeSamples(m.Value, p.samples, now)
		if err != nil {
			return err
		}
		in.takeSamples(p, m, sb, now)
		return nil
	case p.events != nil && m.Topic == in.cfg.EventsTopic:
		if err := in.decodeEvents(m.Value, p.events, now); err != nil {
			return err
		}
		in.takeEvents(p, m.Offset, now)
		return nil
	}
	return fmt.Errorf("%w: unexpected topic %q", wire.ErrMalformed, m.Topic)
}

// decodeSamples decodes a sample batch and checks it against cols' limits.
func (in *Ingester) decodeSamples(data []byte, cols *sampleColumns, now time.Time) (*wire.Samples, error) {
	sb, err := in.sd.Decode(data)
	if (err != nil || len(sb.TimeUnixMs) == 0) && in.isEventBatch(data) {
		// It would decode as a sample batch without rows and be dropped unseen, or fail with a
		// reason that hides what it is.
		return nil, fmt.Errorf("%w: an event batch (%d events) on the samples topic", wire.ErrMalformed, len(in.eb.Events))
	}
	if err != nil {
		return nil, err
	}
	if err := cols.check(sb, now); err != nil {
		return nil, err
	}
	return sb, nil
}

// takeSamples adds a decoded sample batch to p unless it repeats one this worker took (then only
// its offset is kept, as a repeat), and does the agent's bookkeeping: the lookup of repeats in
// ClickHouse, the delay's sample times and the sequence gaps.
func (in *Ingester) takeSamples(p *partBatch, m kafka.Message, sb *wire.Samples, now time.Time) {
	if in.duplicate(sb) {
		p.repeats = append(p.repeats, m.Offset)
		return
	}
	p.samples.appendBatch(sb)
	in.noteLookup(p.samples, sb, m.Offset, p.replay != nil)
	if len(sb.TimeUnixMs) > 0 && !in.skewed(sb.AgentID, slices.Max(sb.TimeUnixMs), now) {
		// A skewed clock's times say nothing about delay (it would go negative).
		p.sampleTimes = append(p.sampleTimes, sb.TimeUnixMs[0])
	}
	in.checkSeq(p, m, sb.AgentID, sb.Seq)
}

// decodeEvents decodes an event batch into in.eb and checks it against cols' limits.
func (in *Ingester) decodeEvents(data []byte, cols *eventColumns, now time.Time) error {
	// A sample batch decodes as an event batch (without events, or with garbage ones from its
	// driver_version); an event batch never has the rows a sample batch has.
	if sb, err := in.sd.Decode(data); err == nil && len(sb.TimeUnixMs) > 0 {
		return fmt.Errorf("%w: a sample batch (%d rows) on the events topic", wire.ErrMalformed, len(sb.TimeUnixMs))
	}
	if err := wire.DecodeEvents(data, &in.eb); err != nil {
		return err
	}
	return cols.check(&in.eb, now)
}

// takeEvents adds the event batch decoded into in.eb to p, marking where its message begins for
// the lookup of repeats, and counts a skewed clock.
func (in *Ingester) takeEvents(p *partBatch, offset int64, now time.Time) {
	before := len(p.events.msgs)
	p.events.appendBatch(&in.eb)
	if len(p.events.msgs) > before {
		p.events.msgs[before].offset = offset
	}
	newest := int64(math.MinInt64)
	for _, e := range in.eb.Events {
		newest = max(newest, e.TimeUnixMs)
	}
	in.skewed(in.eb.AgentId, newest, now)
}

// deadLetter queues m for the dead-letter topic with why it was refused and where it came from.
func (in *Ingester) deadLetter(p *partBatch, m kafka.Message, reason error) {
	in.log.Warn("dead-lettering message", slog.String("topic", m.Topic), slog.Int("partition", m.Partition),
		slog.Int64("offset", m.Offset), slog.Any("reason", reason))
	p.dead = append(p.dead, kafka.Message{Key: m.Key, Value: m.Value, Headers: []kafka.Header{
		{Key: "reason", Value: []byte(reason.Error())},
		{Key: "source_topic", Value: []byte(m.Topic)},
		{Key: "source_partition", Value: []byte(strconv.Itoa(m.Partition))},
		{Key: "source_offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
	}})
}

// cutFor is the cut policy after p took the message at offset: a batch replaying a recorded range
// is cut at the range's end and only there; any other is cut at BatchRows, and when the batcher
// holds BatchBytes the largest batch is cut.
func (in *Ingester) cutFor(p *partBatch, offset int64) *cut {
	if p.target >= 0 {
		if offset >= p.target {
			return in.cutParts([]*partBatch{p})
		}
		return nil // replaying a recorded range: its end, not size or age, closes the batch
	}
	if p.rows() >= in.cfg.BatchRows {
		return in.cutParts([]*partBatch{p})
	}
	if in.building >= in.cfg.BatchBytes {
		// Cut the largest batch, not all of them: the others keep growing towards BatchRows, so a
		// worker with many partitions still makes large inserts, which is what ClickHouse is fast at
		// (a 50k-row block costs twice the CPU per row of a 100k-row one on chDB, merges included).
		return in.cutParts(in.largest())
	}
	return nil
}

// isEventBatch reports whether data is an event batch with events (decoded into in.eb).
func (in *Ingester) isEventBatch(data []byte) bool {
	return wire.DecodeEvents(data, &in.eb) == nil && len(in.eb.Events) > 0
}

// skewed counts and logs a message whose newest timestamp is ahead of the ingest clock by more
// than ClockSkewTolerance: the agent's clock is wrong (delay only makes times older), and its
// node drops out of windows that end now. The message is kept; MaxClockAhead rejects worse.
func (in *Ingester) skewed(agent string, newestMs int64, now time.Time) bool {
	ahead := time.UnixMilli(newestMs).Sub(now)
	if ahead <= in.cfg.ClockSkewTolerance {
		return false
	}
	in.nSkewed.Add(1)
	in.m.clockSkew.Observe(ahead.Seconds())
	if in.skewLog.first(agent, now, in.cfg.SkewLogInterval) {
		in.log.Warn("agent clock is ahead of the ingest clock; its samples are stored at the times it sent",
			slog.String("agent", agent), slog.Duration("ahead", ahead.Round(time.Millisecond)),
			slog.Duration("tolerance", in.cfg.ClockSkewTolerance), slog.Duration("rejected_beyond", in.cfg.MaxClockAhead))
	}
	return true
}

// skewLog remembers the agents whose skew was logged in the current interval, so each is logged
// once per interval however many messages it sends. It is emptied every interval, so it holds only
// agents skewed within one.
type skewLog struct {
	since  time.Time
	logged map[string]struct{}
}

func (l *skewLog) first(agent string, now time.Time, every time.Duration) bool {
	if l.logged == nil || now.Sub(l.since) >= every || now.Before(l.since) {
		l.since, l.logged = now, map[string]struct{}{}
	}
	if _, ok := l.logged[agent]; ok {
		return false
	}
	l.logged[agent] = struct{}{}
	return true
}

// sampleCols reuses the columns of a committed cut when one is free.
func (in *Ingester) sampleCols() *sampleColumns {
	select {
	case c := <-in.freeCols:
		return c
	default:
		return newSampleColumns()
	}
}

// recentBatches is how many of an agent's latest batches duplicate detection remembers.
const recentBatches = 64

// recent is an agent's latest batches: sequence number and first sample time, by seq mod 64.
type recent struct {
	seq  [recentBatches]uint64
	time [recentBatches]int64
	// last is the latest batch's seq; lookup says the latest batch may have been taken before
	// this generation, whose memory started empty, and is looked up in gpu_samples (repeats.go).
	last   uint64
	lookup bool
}

// duplicate reports whether b is a batch of this agent already taken: the same sequence number
// with the same first sample time. A producer that retried a write whose acknowledgement was lost
// (a broker outage) sends a batch twice; an agent restarted without its spool reuses sequence
// numbers but not sample times, so its batches are kept.
func (in *Ingester) duplicate(b *wire.Samples) bool {
	if len(b.TimeUnixMs) == 0 {
		return false
	}
	a, fresh := in.agents.get(b.AgentID)
	// The batches seen in an earlier generation are forgotten: ones this worker took but did not
	// commit come round again, and must not be mistaken for producer duplicates.
	first := fresh || a.gen != in.gen
	if first {
		a.recent, a.gen = recent{}, in.gen
	}
	r := &a.recent
	i := b.Seq % recentBatches
	if r.seq[i] == b.Seq && r.time[i] == b.TimeUnixMs[0] {
		in.nDuplicates.Add(1)
		return true
	}
	// A retry comes after the original, and after later batches of the agent only if it was
	// delayed: so the agent's first batch in this generation and one numbered below its last are
	// the ones that can repeat a batch this memory never saw.
	r.lookup = first || b.Seq < r.last
	r.seq[i], r.time[i], r.last = b.Seq, b.TimeUnixMs[0], b.Seq
	return false
}

// checkSeq counts the batches an agent numbered that this partition never carried. A sequence
// number at or below the last one seen is a restarted agent or a replay, not a gap. Only a jump
// within one run of the partition is a gap: across runs other workers (or this one, earlier) may
// have taken the batches in between, which is how a rebalance made false gaps.
func (in *Ingester) checkSeq(p *partBatch, m kafka.Message, agent string, seq uint64) {
	a, _ := in.agents.get(agent)
	last, continuous := a.seq, a.run != 0 && a.run == p.run
	a.seq, a.run = seq, p.run
	if !continuous || seq <= last+1 {
		return
	}
	p.gaps.add(agent, m, last+1, seq)
}

// partRun is a stretch of a partition this worker read without a hole: every message from the
// run's first offset to next-1 went through its batcher, whatever generation it was in.
type partRun struct {
	id   uint64
	next int64
}

// startRun is called for a message at an offset other than the one after the last this batcher
// read of its partition (a new generation, a replay, a partition taken back): the partition's run
// goes on if the last generation read it up to just before offset, else a new run begins.
func (in *Ingester) startRun(p *partBatch, offset int64) {
	if r, ok := in.runs[p.key]; ok && r.next == offset && p.next < 0 {
		p.run = r.id
		return
	}
	in.runSeq++
	p.run = in.runSeq
}

// startGeneration keeps what this worker knows of the partitions the generation assigns it and
// forgets the rest: their lag series (another worker reports them now) and their runs. Whatever an
// earlier generation left uncommitted is replayed by the next owner, so the batches start empty.
func (in *Ingester) startGeneration(assigned map[string][]kafka.PartitionAssignment) {
	owned := map[partKey]bool{}
	for topic, as := range assigned {
		for _, a := range as {
			owned[partKey{topic, a.ID}] = true
		}
	}
	for k, p := range in.parts {
		if p.next >= 0 && p.run != 0 {
			in.runs[k] = partRun{id: p.run, next: p.next}
		}
	}
	in.forgetPartitions(owned)
	clear(in.parts)
	// A fold the last generation's inserter left (it stopped on an error, not at a graceful end)
	// was not committed: its partition's next owner replays it.
	clear(in.folds)
	in.foldHeld.Store(0)
	in.building = 0
	in.gen++
}

// forgetPartitions drops the lag series and runs of the partitions not in owned (nil: all).
func (in *Ingester) forgetPartitions(owned map[partKey]bool) {
	for k := range in.lags {
		if !owned[k] {
			in.m.lag.DeleteLabelValues(k.topic, strconv.Itoa(k.partition))
			delete(in.lags, k)
		}
	}
	for k := range in.runs {
		if !owned[k] {
			delete(in.runs, k)
		}
	}
}

// cutDue cuts every non-empty partition batch, events and samples alike (send splits them), but
// one cutting a recorded range again that has not reached the range's end: cut short it would be
// another block under another token, stored twice. Left uncut and uncommitted, it is read again
// by the partition's next owner, who cuts the range whole.
func (in *Ingester) cutDue() *cut {
	var ps []*partBatch
	for _, p := range append(in.due(true, true, 0), in.due(true, false, 0)...) {
		if p.target < 0 {
			ps = append(ps, p)
		}
	}
	return in.cutParts(ps)
}

// due lists, in partition order, the non-empty batches of the events topic (events set) or of the
// others that are older than age (not replaying a recorded range), or all of them when all is set.
func (in *Ingester) due(all, events bool, age time.Duration) []*partBatch {
	var due []*partBatch
	for _, p := range in.parts {
		if p.n > 0 && in.isEvents(p) == events && (all || p.target < 0 && time.Since(p.started) >= age) {
			due = append(due, p)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		return due[i].key.topic < due[j].key.topic || due[i].key.topic == due[j].key.topic && due[i].key.partition < due[j].key.partition
	})
	return due
}

// isEvents says whether p is a partition of the events topic.
func (in *Ingester) isEvents(p *partBatch) bool { return p.key.topic == in.cfg.EventsTopic }

// splitEvents splits c into its events topic's batches and the rest (either nil when empty).
func (in *Ingester) splitEvents(c *cut) (ev, rest *cut) {
	if c == nil {
		return nil, nil
	}
	for _, p := range c.parts {
		dst := &rest
		if in.isEvents(p) {
			dst = &ev
		}
		if *dst == nil {
			*dst = &cut{}
		}
		(*dst).parts = append((*dst).parts, p)
	}
	return ev, rest
}

// largest is the biggest batch by message bytes that is not replaying a recorded range (those end
// where the range ends), or none.
func (in *Ingester) largest() []*partBatch {
	var big *partBatch
	for _, p := range in.parts {
		if p.n > 0 && p.target < 0 && (big == nil || p.bytes > big.bytes) {
			big = p
		}
	}
	if big == nil {
		return nil
	}
	return []*partBatch{big}
}

// cutParts moves the batches' contents into a cut and leaves the partitions empty, to be refilled
// from fresh columns.
func (in *Ingester) cutParts(ps []*partBatch) *cut {
	if len(ps) == 0 {
		return nil
	}
	c := &cut{}
	for _, p := range ps {
		moved := *p
		c.parts = append(c.parts, &moved)
		p.samples, p.events, p.dead, p.sampleTimes, p.gaps = nil, nil, nil, nil, gapColumns{}
		p.repeats, p.replay = nil, nil
		in.building -= p.bytes
		p.n, p.bytes, p.target = 0, 0, -1
	}
	return c
}

// groupMovedOn says a commit was refused because this member's generation is over (a rebalance,
// or the member evicted while it stopped).
func groupMovedOn(err error) bool {
	return errors.Is(err, kafka.UnknownMemberId) || errors.Is(err, kafka.IllegalGeneration) ||
		errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.FencedInstanceID)
}

// inserter inserts and commits cuts until both channels are closed and drained or an insert fails
// for good: each channel's in order, an events cut before a waiting samples cut, and inside a
// samples cut between one partition's insert and the next (a cut of many partitions' samples
// takes as many inserts, each through the rollup views).
func (in *Ingester) inserter(ctx context.Context, evCuts, cuts <-chan *cut, commit committer) error {
	between := func() error {
		if evCuts == nil {
			return nil
		}
		select {
		case c, ok := <-evCuts:
			if !ok {
				evCuts = nil
				return nil
			}
			return in.insertCut(ctx, c, commit, nil)
		default:
			return nil
		}
	}
	// A partition that goes quiet gets no cut to flush its fold on: the ticker does.
	var foldTick <-chan time.Time
	if in.cfg.Fold {
		t := time.NewTicker(max(in.cfg.FoldAge/4, 100*time.Millisecond))
		defer t.Stop()
		foldTick = t.C
	}
	for evCuts != nil || cuts != nil {
		var c *cut
		var ok bool
		select {
		case c, ok = <-evCuts:
			if !ok {
				evCuts = nil
				continue
			}
		default:
			select {
			case c, ok = <-evCuts:
				if !ok {
					evCuts = nil
					continue
				}
			case c, ok = <-cuts:
				if !ok {
					cuts = nil
					continue
				}
			case <-foldTick:
				if err := in.flushFolds(ctx, commit, false); err != nil {
					return err
				}
				continue
			}
		}
		next := between
		if in.isEventCut(c) {
			next = nil
		}
		if err := in.insertCut(ctx, c, commit, next); err != nil {
			return err // the batcher sees it on its next send or tick and stops
		}
	}
	// The generation ends (every cut is in): the folds go too, so that the partitions' next owners
	// start where this worker committed.
	return in.flushFolds(ctx, commit, true)
}

// isEventCut says whether c holds the events topic's batches (splitEvents keeps them apart).
func (in *Ingester) isEventCut(c *cut) bool { return len(c.parts) > 0 && in.isEvents(c.parts[0]) }

// insertCut records the batches' ranges, inserts each with a token naming its range, writes dead
// letters, then commits. Each step is retried with capped backoff until it succeeds or ctx ends.
// After each batch's insert it calls between, when set: another cut's whole insert and commit may
// go there, since the two cuts share no partition and this one's range is already recorded.
func (in *Ingester) insertCut(ctx context.Context, c *cut, commit committer, between func() error) error {
	start := time.Now()
	var fresh []*partBatch
	for _, p := range c.parts {
		if p.target < 0 {
			fresh = append(fresh, p)
		}
	}
	// What a batch leaves out as repeats is part of its record: a replay leaves out the same.
	seenEvents := map[msgKey]bool{}
	for _, p := range c.parts {
		if err := in.dropRepeats(ctx, p, seenEvents); err != nil {
			return fmt.Errorf("flush %s: %w", p.token(), err)
		}
	}
	// One insert per shard, each retried alone: a retry does not record again on a shard that took it.
	for _, ps := range in.byShard(fresh) {
		if err := in.retry(ctx, "record batch ranges", func(ctx context.Context) error {
			return in.recordIntents(ctx, ps)
		}); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	offsets := map[string]map[int]int64{}
	var dead []kafka.Message
	for _, p := range c.parts {
		table, block := p.table()
		token := p.token()
		if err := in.retry(ctx, "insert "+table, func(ctx context.Context) error {
			return in.insert(ctx, in.storeOf(p.key.partition), table, block, token)
		}); err != nil {
			return fmt.Errorf("flush %s: %w", token, err)
		}
		if p.gaps.block.Rows() > 0 {
			if err := in.retry(ctx, "insert "+schema.IngestGaps, func(ctx context.Context) error {
				return in.storeOf(p.key.partition).Insert(ctx, schema.IngestGaps, &p.gaps.block, "gaps/"+token)
			}); err != nil {
				return fmt.Errorf("flush %s: %w", token, err)
			}
		}
		if in.folding(p) {
			// Committed with its fold (folds.go), which it joins now that its rows are stored.
			if err := in.foldBatch(ctx, p); err != nil {
				return fmt.Errorf("flush %s: %w", token, err)
			}
		} else {
			if offsets[p.key.topic] == nil {
				offsets[p.key.topic] = map[int]int64{}
			}
			offsets[p.key.topic][p.key.partition] = p.last + 1
		}
		dead = append(dead, p.dead...)
		if between != nil {
			if err := between(); err != nil {
				return err
			}
		}
	}
	ack := in.cfg.Now().UnixMilli()
	if in.crashAfterInsert != nil && in.crashAfterInsert() {
		return errCrashed
	}
	if len(dead) > 0 {
		d := &deadLetters{msgs: dead, done: make([]bool, len(dead))}
		if err := in.retry(ctx, "write dead letters", func(ctx context.Context) error {
			return in.writeDead(ctx, d)
		}); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if len(offsets) > 0 {
		if err := in.commitOffsets(ctx, commit, offsets); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if err := in.flushFolds(ctx, commit, false); err != nil {
		return err
	}
	var msgs uint64
	for _, p := range c.parts {
		in.m.batchRows.Observe(float64(p.rows()))
		in.m.batchAge.Observe(time.Since(p.started).Seconds())
		for _, t := range p.sampleTimes {
			in.m.e2eDelay.Observe(max(float64(ack-t)/1000, 0)) // within ClockSkewTolerance ahead: no delay
		}
		if p.samples != nil {
			for i, n := range p.samples.nulled {
				if n > 0 {
					in.m.nulled.WithLabelValues(gpumetric.All()[i].Column).Add(float64(n))
					p.samples.nulled[i] = 0
				}
			}
			in.nSamples.Add(uint64(p.samples.block.Rows()))
			p.samples.block.Reset()
			select {
			case in.freeCols <- p.samples:
			default:
			}
		} else {
			in.nEvents.Add(uint64(p.events.block.Rows()))
		}
		in.nGaps.Add(p.gaps.missingTotal())
		in.nGapsRecorded.Add(uint64(p.gaps.block.Rows()))
		if !in.folding(p) {
			msgs += uint64(p.n) // a folded batch's are counted with its fold's commit
		}
	}
	in.nDLQ.Add(uint64(len(dead)))
	in.nMessages.Add(msgs)
	in.log.Debug("committed", slog.Int("batches", len(c.parts)), slog.Uint64("messages", msgs),
		slog.Duration("took", time.Since(start)))
	return nil
}

// commitOffsets commits, retrying with backoff until it succeeds or ctx ends. A commit the group
// refuses because it moved on is given up: the rows are stored under their range's token, so the
// partition's next owner (this worker again, or another) reads the range again and the insert is
// dropped. A commit that cannot be made is lost work, not lost data, and retrying it cannot succeed.
func (in *Ingester) commitOffsets(ctx context.Context, commit committer, offsets map[string]map[int]int64) error {
	return in.retry(ctx, "commit offsets", func(ctx context.Context) error {
		err := commit(ctx, offsets)
		if groupMovedOn(err) {
			in.m.commitsLost.Inc()
			in.log.Warn("offset commit refused: the consumer group moved on; the next owner replays the range, which its token makes a no-op",
				slog.Any("err", err))
			return nil
		}
		return err
	})
}

func (in *Ingester) insert(ctx context.Context, st store.Store, table string, b *store.Block, token string) error {
	if b.Rows() == 0 {
		return nil
	}
	start := time.Now()
	if err := st.Insert(ctx, table, b, token); err != nil {
		return err
	}
	in.m.insertSeconds.Observe(time.Since(start).Seconds())
	return nil
}
