package health

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkHealthObserve evaluates 8-GPU nodes tick after tick with every catalogue column
// present: the cost per GPU-tick the agent (and the simulator, per simulated GPU) pays, and the
// state kept per GPU.
func BenchmarkHealthObserve(b *testing.B) {
	nd := newNode(8)
	vals := map[int]map[string]float64{}
	for g := range 8 {
		vals[g] = map[string]float64{"remap_pending": 0, "remap_failure": 0, "retired_pages_pending": 0, "ecc_dbe_volatile": 0,
			"ecc_sbe_volatile": 1, "energy_mj": 1e6, "nvlink_crc_flit_errors": 0, "nvlink_crc_data_errors": 0,
			"nvlink_replay_errors": 0, "viol_thermal_ns": 0, "viol_power_ns": 0}
	}
	const nodes = 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	evs := make([]*Evaluator, nodes)
	for i := range evs {
		evs[i] = NewEvaluator(Config{})
	}
	bt := nd.batch(0, vals)
	for _, e := range evs {
		e.Observe(bt, 0, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / (nodes * 8)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms := nd.t0.Add(time.Duration(i/nodes+1) * time.Second).UnixMilli()
		for k := range bt.TimeUnixMs {
			bt.TimeUnixMs[k] = ms
		}
		evs[i%nodes].Observe(bt, 0, nil)
	}
	b.ReportMetric(heap, "heap-B/gpu")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*8), "ns/gpu-tick")
	runtime.KeepAlive(evs)
}
