package ingest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Exactly-once into ClickHouse without a transaction spanning Kafka and ClickHouse:
//
//  1. before inserting a partition's batch [first, last], record the range in ingest_intents;
//  2. insert the rows with insert_deduplication_token "topic/partition/first-last";
//  3. commit offset last+1.
//
// A worker killed after 1 or 2 leaves a range recorded but not committed. Whoever consumes the
// partition next starts at first again, finds the range, cuts exactly [first, last] again, and
// inserts it with the same token: ClickHouse drops the block if step 2 had happened, stores it if
// not. This is the design of ClickHouse's Kafka Connect sink, with the state kept in ClickHouse.
// The same block: the range's record also lists the offsets of the messages the batch left out as
// repeats, and the replay leaves out those and no others (repeats.go says why).

// intentCovering returns the last offset of the recorded range that contains offset, or -1, and
// the offsets that range left out as repeats (nil for a range recorded before they were kept).
func (in *Ingester) intentCovering(ctx context.Context, k partKey, offset int64) (int64, map[int64]bool, error) {
	st := in.storeOf(k.partition)
	db := st.Database()
	// ORDER BY … LIMIT 1 rather than max(): max over no rows is 0, which would read as a range.
	q := fmt.Sprintf("SELECT last_offset, toInt64(repeats_known), repeats FROM %s WHERE group_id = %s AND topic = %s AND partition = %d "+
		"AND first_offset <= %d AND last_offset >= %d ORDER BY last_offset DESC LIMIT 1",
		store.Table(db, schema.IngestIntents), store.QuoteString(in.cfg.GroupID), store.QuoteString(k.topic),
		k.partition, offset, offset)
	var last int64 = -1
	var repeats map[int64]bool
	err := in.retry(ctx, "read batch ranges", func(ctx context.Context) error {
		r, err := st.Query(ctx, q)
		if err != nil {
			return err
		}
		last, repeats = -1, nil
		if len(r.Rows) != 1 || len(r.Rows[0]) != 3 || r.Rows[0][0] == nil {
			return nil
		}
		row := r.Rows[0]
		v, ok := row[0].(int64)
		if !ok || v < offset {
			return nil
		}
		last = v
		if known, _ := row[1].(int64); known == 1 {
			text, _ := row[2].(string)
			if repeats, err = parseRepeats(text); err != nil {
				return fmt.Errorf("range %d-%d of %s/%d: %w", offset, last, k.topic, k.partition, err)
			}
		}
		return nil
	})
	if err != nil {
		return -1, nil, fmt.Errorf("read %s: %w", schema.IngestIntents, err)
	}
	return last, repeats, nil
}

// formatRepeats and parseRepeats write a batch's repeats as ingest_intents.repeats, offsets
// separated by spaces (the store's blocks have no array column; a batch seldom has repeats).
func formatRepeats(offsets []int64) string {
	var b strings.Builder
	for i, o := range offsets {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(o, 10))
	}
	return b.String()
}

func parseRepeats(s string) (map[int64]bool, error) {
	out := map[int64]bool{}
	for _, f := range strings.Fields(s) {
		o, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("repeats %q: %w", f, err)
		}
		out[o] = true
	}
	return out, nil
}

// recordIntents writes the ranges of batches about to be inserted, in one insert into their shard
// (byShard: they are all of one).
func (in *Ingester) recordIntents(ctx context.Context, ps []*partBatch) error {
	if len(ps) == 0 {
		return nil
	}
	group := &store.ColString{ColName: "group_id"}
	topic := &store.ColString{ColName: "topic"}
	part := &store.ColUInt32{ColName: "partition"}
	first := &store.ColInt64{ColName: "first_offset"}
	last := &store.ColInt64{ColName: "last_offset"}
	known := &store.ColUInt8{ColName: "repeats_known"}
	repeats := &store.ColString{ColName: "repeats"}
	for _, p := range ps {
		known.V = append(known.V, 1)
		repeats.V = append(repeats.V, formatRepeats(p.repeats))
		group.V = append(group.V, in.cfg.GroupID)
		topic.V = append(topic.V, p.key.topic)
		part.V = append(part.V, uint32(p.key.partition))
		first.V = append(first.V, p.first)
		last.V = append(last.V, p.last)
	}
	b := &store.Block{Columns: []store.Column{group, topic, part, first, last, known, repeats}}
	return in.storeOf(ps[0].key.partition).Insert(ctx, schema.IngestIntents, b, "")
}

// gapColumns are ingest_gaps rows found in one partition batch; they are inserted with a token
// derived from the batch's, so a replay does not count a gap twice.
type gapColumns struct {
	block                   store.Block
	agent, topic            *store.ColString
	partition               *store.ColUInt32
	offset                  *store.ColInt64
	expected, seen, missing *store.ColUInt64
}

func (g *gapColumns) add(agent string, m kafka.Message, expected, seen uint64) {
	if g.agent == nil {
		g.agent, g.topic = &store.ColString{ColName: "agent_id"}, &store.ColString{ColName: "topic"}
		g.partition = &store.ColUInt32{ColName: "partition"}
		g.offset = &store.ColInt64{ColName: "offset"}
		g.expected, g.seen = &store.ColUInt64{ColName: "expected_seq"}, &store.ColUInt64{ColName: "seen_seq"}
		g.missing = &store.ColUInt64{ColName: "missing"}
		g.block.Columns = []store.Column{g.agent, g.topic, g.partition, g.offset, g.expected, g.seen, g.missing}
	}
	g.agent.V = append(g.agent.V, agent)
	g.topic.V = append(g.topic.V, m.Topic)
	g.partition.V = append(g.partition.V, uint32(m.Partition))
	g.offset.V = append(g.offset.V, m.Offset)
	g.expected.V = append(g.expected.V, expected)
	g.seen.V = append(g.seen.V, seen)
	g.missing.V = append(g.missing.V, seen-expected)
}

func (g *gapColumns) missingTotal() uint64 {
	if g.missing == nil {
		return 0
	}
	var n uint64
	for _, v := range g.missing.V {
		n += v
	}
	return n
}
