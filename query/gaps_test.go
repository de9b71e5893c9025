package query_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// Gaps reads what ingest recorded in ingest_gaps, newest first, within the window and the limit.
func TestGaps(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// Recent times: the table's TTL drops rows older than 90 days at any merge.
	base := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	at := func(d time.Duration) string { return base.Add(d).Format("'2006-01-02 15:04:05.000'") }
	if err := st.Exec(ctx, "INSERT INTO "+store.Table(st.Database(), "ingest_gaps")+
		" (detected_at, agent_id, topic, partition, offset, expected_seq, seen_seq, missing) VALUES "+
		"("+at(-time.Minute)+", 'node-1', 'gpu.samples', 2, 40, 4, 6, 2), "+
		"("+at(1500*time.Millisecond)+", 'node-1', 'gpu.samples', 2, 90, 10, 11, 1), "+
		"("+at(2*time.Second)+", 'node-7', 'gpu.samples', 0, 7, 100, 105, 5)"); err != nil {
		t.Fatal(err)
	}
	first := query.Gap{DetectedAt: base.Add(2 * time.Second), Agent: "node-7", Topic: "gpu.samples", Offset: 7, ExpectedSeq: 100, SeenSeq: 105, Missing: 5}
	second := query.Gap{DetectedAt: base.Add(1500 * time.Millisecond), Agent: "node-1", Topic: "gpu.samples", Partition: 2, Offset: 90, ExpectedSeq: 10, SeenSeq: 11, Missing: 1}
	for _, c := range []struct {
		name     string
		from, to time.Time
		limit    int
		want     []query.Gap
	}{
		{"window", base, base.Add(time.Minute), 10, []query.Gap{first, second}},
		{"limit", base.Add(-time.Hour), base.Add(time.Minute), 1, []query.Gap{first}},
		{"none", base.Add(time.Minute), base.Add(time.Hour), 10, []query.Gap{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := query.Gaps(ctx, st, c.from, c.to, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		limit    int
	}{
		{"empty window", base, base, 10},
		{"limit 0", base, base.Add(time.Minute), 0},
		{"limit over the maximum", base, base.Add(time.Minute), query.MaxGaps + 1},
	} {
		if _, err := query.Gaps(ctx, st, c.from, c.to, c.limit); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
}
