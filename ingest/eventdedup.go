package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gpufleet/gpufleet/store"
)

// Event batches delivered twice. The offset-range token (intents.go) makes a replayed cut
// harmless, but a producer that retried a write whose acknowledgement was lost puts the same
// message in Kafka twice, at two offsets: two ranges, two tokens, both stored. Sample batches are
// caught in memory (duplicate in batch.go); an event message is caught by what it carries, its
// agent, sequence number and first event's time, looked up in gpu_events before its cut is
// inserted. Cuts are inserted one after another, so the earlier copy is in gpu_events by then,
// whichever worker, generation or process took it. Two identical events in one message are one
// message and stay two rows.

// eventMsg is one event message in an eventColumns: what names it, and its first row.
type eventMsg struct {
	key eventKey
	row int
}

// eventKey names an event message across deliveries. An agent numbers its messages (seq); an
// agent restarted without its spool reuses numbers, but not event times, so the first event's time
// keeps its new messages apart from the old.
type eventKey struct {
	cluster, node, agent string
	seq                  uint64
	firstMs              int64
}

// maxLookupQuery bounds the text of one lookup; the server refuses statements over
// max_query_size (256 KiB by default), and a catch-up cut can hold thousands of messages.
const maxLookupQuery = 128 << 10

// dropStoredEvents removes from an event batch the messages already stored in gpu_events or seen
// earlier in the same cut (seen, shared by the cut's batches). Unnumbered messages (seq 0) are kept:
// nothing tells their retry from a new message. On a replay of a recorded range the batch's own
// earlier insert is found too; the batch then shrinks or empties, and its token still drops it.
func (in *Ingester) dropStoredEvents(ctx context.Context, p *partBatch, seen map[eventKey]bool) error {
	c := p.events
	if c == nil || len(c.msgs) == 0 {
		return nil
	}
	var stored map[eventKey]bool
	if err := in.retry(ctx, "read stored events", func(ctx context.Context) error {
		var err error
		stored, err = in.storedEvents(ctx, c.msgs)
		return err
	}); err != nil {
		return fmt.Errorf("look up stored events: %w", err)
	}
	rows := c.block.Rows()
	keep := make([]bool, rows)
	dropped := 0
	for i, m := range c.msgs {
		end := rows
		if i+1 < len(c.msgs) {
			end = c.msgs[i+1].row
		}
		dup := m.key.seq != 0 && (stored[m.key] || seen[m.key])
		if dup {
			dropped++
		} else {
			seen[m.key] = true
		}
		for r := m.row; r < end; r++ {
			keep[r] = !dup
		}
	}
	if dropped == 0 {
		return nil
	}
	if err := keepRows(&c.block, keep); err != nil {
		return err
	}
	in.nDuplicates.Add(uint64(dropped))
	in.log.Debug("dropped repeated event messages", slog.String("topic", p.key.topic), slog.Int("partition", p.key.partition),
		slog.Int("messages", dropped))
	return nil
}

// storedEvents returns which of msgs' keys gpu_events already holds.
func (in *Ingester) storedEvents(ctx context.Context, msgs []eventMsg) (map[eventKey]bool, error) {
	stored := map[eventKey]bool{}
	table := store.Table(in.cfg.Store.Database(), "gpu_events")
	for len(msgs) > 0 {
		var tuples strings.Builder
		lo, hi := msgs[0].key.firstMs, msgs[0].key.firstMs
		n := 0
		for ; n < len(msgs) && tuples.Len() < maxLookupQuery; n++ {
			k := msgs[n].key
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
		msgs = msgs[n:]
		if tuples.Len() == 0 {
			continue
		}
		// The time bounds let the engine skip partitions and granules; the tuple is the match. The
		// cluster and node lead gpu_events' sorting key.
		q := fmt.Sprintf("SELECT DISTINCT cluster, node, agent_id, seq, toUnixTimestamp64Milli(time) FROM %s "+
			"WHERE time >= fromUnixTimestamp64Milli(toInt64(%d), 'UTC') AND time <= fromUnixTimestamp64Milli(toInt64(%d), 'UTC') "+
			"AND (cluster, node, agent_id, seq, toUnixTimestamp64Milli(time)) IN (%s)", table, lo, hi, tuples.String())
		r, err := in.cfg.Store.Query(ctx, q)
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

func keyOfRow(row []any) (eventKey, error) {
	if len(row) != 5 {
		return eventKey{}, fmt.Errorf("stored events: %d columns, want 5", len(row))
	}
	var k eventKey
	var ok [5]bool
	k.cluster, ok[0] = row[0].(string)
	k.node, ok[1] = row[1].(string)
	k.agent, ok[2] = row[2].(string)
	k.seq, ok[3] = row[3].(uint64)
	k.firstMs, ok[4] = row[4].(int64)
	for i, o := range ok {
		if !o {
			return eventKey{}, fmt.Errorf("stored events: column %d is %T", i+1, row[i])
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
