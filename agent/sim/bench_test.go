package sim

import (
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// BenchmarkSample: one reading of an 8-GPU node, at Meta's failure rate and at the demo's, which
// keeps a failure or two per GPU in view; ns/gpu is the cost of one GPU's row.
func BenchmarkSample(b *testing.B) {
	for _, bc := range []struct {
		name  string
		scale float64
	}{{"scale1", 1}, {"demo", DemoFailureScale}} {
		b.Run(bc.name, func(b *testing.B) {
			n := NewNode(1, "bench", 0, 8, WithFailureScale(bc.scale))
			batch := &wirepb.SampleBatch{}
			var ev []*wirepb.Event
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%60 == 0 { // an agent's minute of batches
					batch.TimeUnixMs, batch.Gpu = batch.TimeUnixMs[:0], batch.Gpu[:0]
					for _, c := range batch.Metrics {
						c.Values, c.Counts, c.Present = c.Values[:0], c.Counts[:0], nil
					}
					ev = ev[:0]
				}
				ev = n.Sample(start.Add(time.Duration(i)*time.Second), batch, ev)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/8, "ns/gpu")
		})
	}
}
