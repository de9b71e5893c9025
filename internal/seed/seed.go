// Package seed writes a simulated fleet's samples straight into gpu_samples, through the same
// decoder and column builder ingest uses, for tests and benchmarks that need data without Kafka.
package seed

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// Fleet describes the simulated fleet.
type Fleet struct {
	Seed        uint64
	Nodes       int
	GPUsPerNode int
	// Clusters spreads node i over cluster Clusters[i % len(Clusters)]; default one, "sim".
	Clusters []string
	// From, To and Step: one sample of every GPU at From, From+Step, … before To.
	From, To time.Time
	Step     time.Duration
	// Driver is the driver version label; empty leaves it unset.
	Driver string
}

// Write inserts the fleet's samples in blocks of about 500,000 rows and returns how many it wrote.
func (f Fleet) Write(ctx context.Context, st store.Store) (uint64, error) {
	clusters := f.Clusters
	if len(clusters) == 0 {
		clusters = []string{"sim"}
	}
	if f.Step <= 0 || !f.To.After(f.From) || f.Nodes < 1 || f.GPUsPerNode < 1 {
		return 0, fmt.Errorf("seed: empty fleet %+v", f)
	}
	nodes := make([]*sim.Node, f.Nodes)
	for i := range nodes {
		nodes[i] = sim.NewNode(f.Seed, clusters[i%len(clusters)], i, f.GPUsPerNode)
	}
	b := ingest.NewSampleBuilder()
	var dec wire.SampleDecoder
	var rows uint64
	now := time.Now()
	flush := func() error {
		if err := st.Insert(ctx, schema.GPUSamples, b.Block(), ""); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		rows += uint64(b.Block().Rows())
		b.Reset()
		return nil
	}
	for t, s := f.From, uint64(1); t.Before(f.To); t, s = t.Add(f.Step), s+1 {
		for _, n := range nodes {
			batch := &wirepb.SampleBatch{AgentId: n.Name, Seq: s, Cluster: n.Cluster, Node: n.Name, DriverVersion: f.Driver,
				IntervalMs: uint32(min(f.Step.Milliseconds(), math.MaxUint32))}
			batch.Rack, batch.Pool = n.Placement()
			n.Sample(t, batch, nil)
			data, err := wire.EncodeSamples(batch)
			if err != nil {
				return rows, fmt.Errorf("seed: %w", err)
			}
			sb, err := dec.Decode(data)
			if err != nil {
				return rows, fmt.Errorf("seed: %w", err)
			}
			if err := b.Add(sb, now); err != nil {
				return rows, fmt.Errorf("seed: %w", err)
			}
		}
		if b.Block().Rows() >= 500_000 {
			if err := flush(); err != nil {
				return rows, err
			}
		}
	}
	return rows, flush()
}
