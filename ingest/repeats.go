package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// Messages delivered twice. The offset-range token (intents.go) makes a replayed cut harmless,
// but a producer that retried a write whose acknowledgement was lost puts the same message in
// Kafka twice, at two offsets: two ranges, two tokens, both stored. A message is named by what it
// carries (msgKey: agent, sequence number, first timestamp) and looked up in its table before its
// cut is inserted. Cuts are inserted one after another, so an earlier copy is stored by then,
// whichever worker, generation or process took it.
//
//   - Event messages are few: every one is looked up in gpu_events. Two identical events in one
//     message are one message and stay two rows.
//   - Sample batches are many: a repeat within a generation is caught in memory (duplicate in
//     batch.go); only an agent's first batch in a generation, and a batch numbered below the
//     agent's last, are looked up in gpu_samples (one query per cut, usually right after a
//     rebalance).
//
// A replay of a recorded range must not look: it would find the batch's own earlier insert, and
// shrink. ClickHouse feeds a block to the rollups' views after the raw table, so a worker killed
// in between leaves the rows in gpu_samples but not in the rollups; the replay's token then drops
// the raw copy and lets the views take what they missed — of the block as replayed. A shrunk
// block left the rollups short (found by the fault matrix: kill -9 of ingest, gpu_1m 8 rows under
// gpu_samples). So what a batch leaves out is recorded with its range (repeats) and a replay
// leaves out exactly that, by offset, and sends the rest: the same block, the same token.

// msgKey names a message across deliveries. An agent numbers its messages (seq); an agent
// restarted without its spool reuses numbers but not times, so the first timestamp keeps its new
// messages apart from the old. Cluster and node lead the tables' sorting keys.
type msgKey struct {
	cluster, node, agent string
	seq                  uint64
	firstMs              int64
}

// eventMsg is one event message in an eventColumns: what names it, and its first row.
type eventMsg struct {
	key    msgKey
	row    int
	offset int64
}

// sampleMsg is a sample batch to look up: what names it and its rows [row, row+n).
type sampleMsg struct {
	key    msgKey
	row, n int
	offset int64
}

// maxLookupQuery bounds the text of one lookup; the server refuses statements over
// max_query_size (256 KiB by default), and a catch-up cut can hold thousands of messages.
const maxLookupQuery = 128 << 10

// dropRepeats removes from a batch the messages already stored, or for events also seen earlier in
// the same cut (seen, shared by the cut's batches).
func (in *Ingester) dropRepeats(ctx context.Context, p *partBatch, seen map[msgKey]bool) error {
	var (
		table   string
		block   *store.Block
		keys    []msgKey
		offsets []int64
		ranges  [][2]int
	)
	switch {
	case p.events != nil && len(p.events.msgs) > 0:
		table, block = schema.GPUEvents, &p.events.block
		for i, m := range p.events.msgs {
			end := block.Rows()
			if i+1 < len(p.events.msgs) {
				end = p.events.msgs[i+1].row
			}
			keys, ranges = append(keys, m.key), append(ranges, [2]int{m.row, end})
			offsets = append(offsets, m.offset)
		}
	case p.samples != nil && len(p.samples.lookup) > 0:
		table, block = schema.GPUSamples, &p.samples.block
		for _, m := range p.samples.lookup {
			keys, ranges = append(keys, m.key), append(ranges, [2]int{m.row, m.row + m.n})
			offsets = append(offsets, m.offset)
		}
		p.samples.lookup = p.samples.lookup[:0] // the columns are reused for later cuts
	default:
		return nil
	}
	var stored map[msgKey]bool
	if p.replay == nil {
		if err := in.retry(ctx, "look up repeated messages", func(ctx context.Context) error {
			var err error
			stored, err = in.storedMessages(ctx, in.storeOf(p.key.partition), table, keys)
			return err
		}); err != nil {
			return fmt.Errorf("look up repeated messages in %s: %w", table, err)
		}
	}
	var keep []bool
	dropped := 0
	for i, k := range keys {
		var dup bool
		if p.replay != nil {
			dup = p.replay[offsets[i]]
		} else {
			// Unnumbered messages (seq 0) are kept: nothing tells their retry from a new message.
			dup = k.seq != 0 && (stored[k] || table == schema.GPUEvents && seen[k])
			if dup {
				p.repeats = append(p.repeats, offsets[i])
			}
		}
		if table == schema.GPUEvents {
			seen[k] = true
		}
		if !dup {
			continue
		}
		if keep == nil {
			keep = make([]bool, block.Rows())
			for r := range keep {
				keep[r] = true
			}
		}
		for r := ranges[i][0]; r < ranges[i][1]; r++ {
			keep[r] = false
		}
		dropped++
	}
	if dropped == 0 {
		return nil
	}
	if err := keepRows(block, keep); err != nil {
		return err
	}
	in.nDuplicates.Add(uint64(dropped))
	in.log.Debug("dropped repeated messages", slog.String("topic", p.key.topic), slog.Int("partition", p.key.partition),
		slog.Int("messages", dropped))
	return nil
}

// storedMessages returns which of keys table already holds in st.
func (in *Ingester) storedMessages(ctx context.Context, st store.Store, table string, keys []msgKey) (map[msgKey]bool, error) {
	stored := map[msgKey]bool{}
	name := store.Table(st.Database(), table)
	for len(keys) > 0 {
		var tuples strings.Builder
		lo, hi := keys[0].firstMs, keys[0].firstMs
		n := 0
		for ; n < len(keys) && tuples.Len() < maxLookupQuery; n++ {
			k := keys[n]
			if k.seq == 0 {
				continue
			}
			if tuples.Len() > 0 {
				tuples.WriteString(", ")
			}
			fmt.Fprintf(&tuples, "(%s, %s, %s, %d, %d)", store.QuoteString(k.cluster), store.QuoteString(k.node),
				store.QuoteString(k.agent), k.seq, k.firstMs)
			lo, hi = min(lo, k.firstMs), max(hi, k.firstMs)
		}
		keys = keys[n:]
		if tuples.Len() == 0 {
			continue
		}
		// The time bounds let the engine skip partitions and granules; the tuple is the match.
		q := fmt.Sprintf("SELECT DISTINCT cluster, node, agent_id, seq, toUnixTimestamp64Milli(time) FROM %s "+
			"WHERE time >= fromUnixTimestamp64Milli(toInt64(%d), 'UTC') AND time <= fromUnixTimestamp64Milli(toInt64(%d), 'UTC') "+
			"AND (cluster, node, agent_id, seq, toUnixTimestamp64Milli(time)) IN (%s)", name, lo, hi, tuples.String())
		r, err := st.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, row := range r.Rows {
			k, err := keyOfRow(row)
			if err != nil {
				return nil, err
			}
			stored[k] = true
		}
	}
	return stored, nil
}

func keyOfRow(row []any) (msgKey, error) {
	if len(row) != 5 {
		return msgKey{}, fmt.Errorf("stored messages: %d columns, want 5", len(row))
	}
	var k msgKey
	var ok [5]bool
	k.cluster, ok[0] = row[0].(string)
	k.node, ok[1] = row[1].(string)
	k.agent, ok[2] = row[2].(string)
	k.seq, ok[3] = row[3].(uint64)
	k.firstMs, ok[4] = row[4].(int64)
	for i, o := range ok {
		if !o {
			return msgKey{}, fmt.Errorf("stored messages: column %d is %T", i+1, row[i])
		}
	}
	return k, nil
}

// keepRows compacts every column of b to the rows where keep is set.
func keepRows(b *store.Block, keep []bool) error {
	for _, col := range b.Columns {
		switch c := col.(type) {
		case *store.ColDateTime64:
			c.V = compact(c.V, keep)
		case *store.ColString:
			c.V = compact(c.V, keep)
		case *store.ColUInt8:
			c.V = compact(c.V, keep)
		case *store.ColUInt32:
			c.V = compact(c.V, keep)
		case *store.ColUInt64:
			c.V = compact(c.V, keep)
		case *store.ColInt64:
			c.V = compact(c.V, keep)
		case *store.ColLowCardString:
			c.Keys = compact(c.Keys, keep)
		case *store.ColNullFloat32:
			c.V, c.Null = compact(c.V, keep), compact(c.Null, keep)
		case *store.ColNullUInt64:
			c.V, c.Null = compact(c.V, keep), compact(c.Null, keep)
		default:
			return fmt.Errorf("drop repeated rows: column %s of type %T", col.Name(), col)
		}
	}
	return nil
}

func compact[T any](v []T, keep []bool) []T {
	out := v[:0]
	for i, x := range v {
		if keep[i] {
			out = append(out, x)
		}
	}
	return out
}

// noteLookup records the sample batch just appended to c, at offset, for a lookup in gpu_samples
// when duplicate found that it may repeat a batch taken before this generation, and every batch of
// a replayed range (whose recorded repeats may be any of them).
func (in *Ingester) noteLookup(c *sampleColumns, b *wire.Samples, offset int64, replay bool) {
	a := in.agents.peek(b.AgentID)
	n := len(b.TimeUnixMs)
	if n == 0 || !replay && (a == nil || !a.recent.lookup) {
		return
	}
	c.lookup = append(c.lookup, sampleMsg{row: c.time.Len() - n, n: n, offset: offset,
		key: msgKey{cluster: b.Cluster, node: b.Node, agent: b.AgentID, seq: b.Seq, firstMs: b.TimeUnixMs[0]}})
}
