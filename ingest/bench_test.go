package ingest

import (
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// BenchmarkDecodeBuild measures ingest's CPU hot path: decode a node's message, validate it and
// append its rows to the columnar block, for full samples (every metric column). It reports
// samples/s on one goroutine, i.e. per core. Run: go test -run '^$' -bench DecodeBuild ./ingest/
func BenchmarkDecodeBuild(b *testing.B) {
	for _, instants := range []int{1, 10} {
		b.Run(map[int]string{1: "8gpu_x1instant", 10: "8gpu_x10instants"}[instants], func(b *testing.B) {
			now := time.Now()
			var msgs [][]byte
			rows := 0
			for n := range 64 {
				node := sim.NewNode(1, "bench", n, 8)
				batch := &wirepb.SampleBatch{AgentId: node.Name, Seq: 1, Cluster: "bench", Node: node.Name}
				for i := range instants {
					node.Sample(now.Add(time.Duration(i)*time.Second), batch, nil)
				}
				data, err := wire.EncodeSamples(batch)
				if err != nil {
					b.Fatal(err)
				}
				msgs = append(msgs, data)
				rows += len(batch.TimeUnixMs)
			}
			cols := newSampleColumns()
			var dec wire.SampleDecoder
			var bytes int
			for _, m := range msgs {
				bytes += len(m)
			}
			b.SetBytes(int64(bytes / len(msgs)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := msgs[i%len(msgs)]
				sb, err := dec.Decode(m)
				if err != nil {
					b.Fatal(err)
				}
				if err := cols.check(sb, now); err != nil {
					b.Fatal(err)
				}
				cols.appendBatch(sb)
				if cols.block.Rows() >= 100_000 {
					cols.block.Reset()
				}
			}
			b.ReportMetric(float64(b.N)*float64(rows)/float64(len(msgs))/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
