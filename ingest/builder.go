package ingest

import (
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// SampleBuilder builds gpu_samples blocks from decoded messages exactly as ingest does, for tools
// and benchmarks that write samples without going through Kafka.
type SampleBuilder struct{ c *sampleColumns }

// NewSampleBuilder returns an empty builder.
func NewSampleBuilder() *SampleBuilder { return &SampleBuilder{c: newSampleColumns()} }

// Add validates a decoded message against now and appends its rows; a rejected message adds
// nothing and its error wraps wire.ErrMalformed.
func (b *SampleBuilder) Add(s *wire.Samples, now time.Time) error {
	if err := b.c.check(s, now); err != nil {
		return err
	}
	b.c.appendBatch(s)
	return nil
}

// Block is the rows added since the last Reset.
func (b *SampleBuilder) Block() *store.Block { return &b.c.block }

// Reset empties the block, keeping its buffers.
func (b *SampleBuilder) Reset() { b.c.block.Reset() }
