package query

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Gap is one jump in an agent's sequence numbers that ingest recorded in ingest_gaps: Missing
// batches numbered ExpectedSeq … SeenSeq-1 never reached ingest (lost before Kafka).
type Gap struct {
	DetectedAt  time.Time `json:"detected_at"`
	Agent       string    `json:"agent_id"`
	Topic       string    `json:"topic"`
	Partition   uint64    `json:"partition"`
	Offset      int64     `json:"offset"`
	ExpectedSeq uint64    `json:"expected_seq"`
	SeenSeq     uint64    `json:"seen_seq"`
	Missing     uint64    `json:"missing"`
}

// MaxGaps bounds the rows Gaps returns.
const MaxGaps = 10_000

// GapsSQL lists the gaps detected in [{from}, {to}) (Unix milliseconds), newest first, at most
// {limit}. Columns are cast to the types Gaps reads on both transports.
func GapsSQL(db string) string {
	return "SELECT toUnixTimestamp64Milli(detected_at), toString(agent_id), toString(topic), toUInt64(partition), " +
		"toInt64(`offset`), expected_seq, seen_seq, missing FROM " + store.Table(db, schema.IngestGaps) +
		" WHERE detected_at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND detected_at < fromUnixTimestamp64Milli({to:Int64}, 'UTC')" +
		" ORDER BY detected_at DESC, agent_id, expected_seq LIMIT {limit:UInt32}"
}

// Gaps returns the sequence gaps ingest detected in [from, to), newest first, at most limit
// (1 … MaxGaps).
func Gaps(ctx context.Context, s store.Store, from, to time.Time, limit int) ([]Gap, error) {
	if !from.Before(to) {
		return nil, invalid("from", "%s is not before to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if limit < 1 || limit > MaxGaps {
		return nil, invalid("limit", "%d: between 1 and %d", limit, MaxGaps)
	}
	r, err := s.QueryWith(ctx, GapsSQL(s.Database()), store.Params{"from": strconv.FormatInt(from.UnixMilli(), 10),
		"to": strconv.FormatInt(to.UnixMilli(), 10), "limit": strconv.Itoa(limit)})
	if err != nil {
		return nil, fmt.Errorf("sequence gaps: %w", err)
	}
	out := []Gap{}
	for _, row := range r.Rows {
		g, err := gapOfRow(row)
		if err != nil {
			return nil, fmt.Errorf("sequence gaps: %w", err)
		}
		out = append(out, g)
	}
	return out, nil
}

func gapOfRow(row []any) (Gap, error) {
	if len(row) != 8 {
		return Gap{}, fmt.Errorf("%d columns, want 8", len(row))
	}
	var g Gap
	var ms int64
	var ok [8]bool
	ms, ok[0] = row[0].(int64)
	g.Agent, ok[1] = row[1].(string)
	g.Topic, ok[2] = row[2].(string)
	g.Partition, ok[3] = row[3].(uint64)
	g.Offset, ok[4] = row[4].(int64)
	g.ExpectedSeq, ok[5] = row[5].(uint64)
	g.SeenSeq, ok[6] = row[6].(uint64)
	g.Missing, ok[7] = row[7].(uint64)
	for i, o := range ok {
		if !o {
			return Gap{}, fmt.Errorf("column %d is %T", i+1, row[i])
		}
	}
	g.DetectedAt = time.UnixMilli(ms).UTC()
	return g, nil
}
