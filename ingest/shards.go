package ingest

import (
	"fmt"

	"github.com/gpufleet/gpufleet/internal/config"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Why shard-local writes rather than inserts through Distributed tables: the rollup views, the
// insert deduplication tokens and the batch ranges (intents.go) all work per table, so a batch is
// written whole to one shard's tables, where its views fire and its token is kept, and a replay
// finds its range on the same shard. A partition's rows all land on one shard, so a node's rows
// never span shards.

// shardsOf is the stores a Config writes to, in partition order.
func shardsOf(cfg Config) ([]store.Store, error) {
	if len(cfg.Shards) == 0 {
		return []store.Store{cfg.Store}, nil
	}
	if cfg.Store != nil {
		return nil, fmt.Errorf("ingest: %w", &config.FieldError{Field: "Shards", Value: len(cfg.Shards),
			Problem: "set Store or Shards, not both: with shards every partition is written to its shard"})
	}
	for i, s := range cfg.Shards {
		if s == nil {
			return nil, fmt.Errorf("ingest: %w", &config.FieldError{Field: fmt.Sprintf("Shards[%d]", i), Value: "nil",
				Problem: "is not a store"})
		}
	}
	return append([]store.Store(nil), cfg.Shards...), nil
}

// storeOf is where partition's batches, their ranges and gaps are written and looked up.
func (in *Ingester) storeOf(partition int) store.Store { return in.shards[in.shardIndex(partition)] }

func (in *Ingester) shardIndex(partition int) int {
	if partition <= 0 { // kafka-go never gives a negative one; no panic on it all the same
		return 0
	}
	return partition % len(in.shards)
}

// byShard splits ps by the shard their partition is written to, keeping their order; shards that
// get none are left out.
func (in *Ingester) byShard(ps []*partBatch) [][]*partBatch {
	if len(in.shards) == 1 {
		if len(ps) == 0 {
			return nil
		}
		return [][]*partBatch{ps}
	}
	groups := make([][]*partBatch, len(in.shards))
	for _, p := range ps {
		i := in.shardIndex(p.key.partition)
		groups[i] = append(groups[i], p)
	}
	out := groups[:0]
	for _, g := range groups {
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}
