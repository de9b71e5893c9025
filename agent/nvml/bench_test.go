//go:build cgo

package nvml

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// BenchmarkSampleEncode is one agent cycle's CPU on an 8-GPU node: one Sample of every GPU plus
// wire.EncodeSamples. It reports the cost per cycle and the share of one core the source would
// take at a 1 s and a 100 ms interval. reused-batch refills one batch, emptied by resetBatch, as
// the agent does between sends; new-batch builds the batch and its columns each cycle.
//
// The NVML calls here go to NVIDIA's moq mocks (function fields that also record every call, in
// slices that grow for as long as the benchmark runs: that growth is the B/op left once the
// source allocates nothing), not the driver: real NVML calls cost from microseconds (cached
// values) to milliseconds (power, field values on some drivers), so this measures the source's
// own overhead, not NVML latency. Run it on a GPU host with the real library for that.
func BenchmarkSampleEncode(b *testing.B) {
	for _, reuse := range []bool{true, false} {
		name := "new-batch"
		if reuse {
			name = "reused-batch"
		}
		b.Run(name, func(b *testing.B) {
			n := newNode(b, dgxh100.New())
			s := newSource(b, n, nil)
			cluster, node := s.Identity()
			batch := &wirepb.SampleBatch{AgentId: node, Cluster: cluster, Node: node}
			var ev []*wirepb.Event
			var bytes int
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if reuse {
					resetBatch(batch)
				} else {
					batch = &wirepb.SampleBatch{AgentId: node, Cluster: cluster, Node: node}
				}
				batch.Seq = uint64(i)
				ev = s.Sample(t0, batch, ev[:0])
				out, err := wire.EncodeSamples(batch)
				if err != nil {
					b.Fatal(err)
				}
				bytes = len(out)
			}
			nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(nsPerOp, "ns/cycle")
			b.ReportMetric(nsPerOp/1e9*100, "%core@1s")
			b.ReportMetric(nsPerOp/1e8*100, "%core@100ms")
			b.ReportMetric(float64(bytes), "bytes/msg")
		})
	}
}
