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
// take at a 1 s and a 100 ms interval.
//
// The NVML calls here go to NVIDIA's moq mocks (function fields that also record every call), not
// the driver: real NVML calls cost from microseconds (cached values) to milliseconds (power,
// field values on some drivers), so this measures the source's own overhead, not NVML latency.
// Run it on a GPU host with the real library for that.
func BenchmarkSampleEncode(b *testing.B) {
	n := newNode(b, dgxh100.New())
	s := newSource(b, n, nil)
	cluster, node := s.Identity()
	var bytes int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		batch := &wirepb.SampleBatch{AgentId: node, Seq: uint64(i), Cluster: cluster, Node: node}
		s.Sample(t0, batch, nil)
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
}
