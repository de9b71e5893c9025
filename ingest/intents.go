package ingest

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/store"
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

// intentCovering returns the last offset of the recorded range that contains offset, or -1.
func (in *Ingester) intentCovering(ctx context.Context, k partKey, offset int64) (int64, error) {
	db := in.cfg.Store.Database()
	// ORDER BY … LIMIT 1 rather than max(): max over no rows is 0, which would read as a range.
	q := fmt.Sprintf("SELECT last_offset FROM %s WHERE group_id = %s AND topic = %s AND partition = %d "+
		"AND first_offset <= %d AND last_offset >= %d ORDER BY last_offset DESC LIMIT 1",
		store.Table(db, "ingest_intents"), store.QuoteString(in.cfg.GroupID), store.QuoteString(k.topic),
		k.partition, offset, offset)
	var last int64 = -1
	err := in.retry(ctx, "read batch ranges", func(ctx context.Context) error {
		r, err := in.cfg.Store.Query(ctx, q)
		if err != nil {
			return err
		}
		last = -1
		if len(r.Rows) == 1 && r.Rows[0][0] != nil {
			if v, ok := r.Rows[0][0].(int64); ok && v >= offset {
				last = v
			}
		}
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("read ingest_intents: %w", err)
	}
	return last, nil
}

// recordIntents writes the ranges of batches about to be inserted, in one insert.
func (in *Ingester) recordIntents(ctx context.Context, ps []*partBatch) error {
	if len(ps) == 0 {
		return nil
	}
	group := &store.ColString{ColName: "group_id"}
	topic := &store.ColString{ColName: "topic"}
	part := &store.ColUInt32{ColName: "partition"}
	first := &store.ColInt64{ColName: "first_offset"}
	last := &store.ColInt64{ColName: "last_offset"}
	for _, p := range ps {
		group.V = append(group.V, in.cfg.GroupID)
		topic.V = append(topic.V, p.key.topic)
		part.V = append(part.V, uint32(p.key.partition))
		first.V = append(first.V, p.first)
		last.V = append(last.V, p.last)
	}
	b := &store.Block{Columns: []store.Column{group, topic, part, first, last}}
	return in.cfg.Store.Insert(ctx, "ingest_intents", b, "")
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
