//go:build cgo

package detect_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/health/nvmlmock"
)

// faults are the Xids injected in turn, one of each catalog action that changes a GPU's state,
// with the state the drain list must show.
var faults = []struct {
	code uint64
	want health.State
}{
	{79, health.RebootNode}, // fallen off the bus: RESTART_BM
	{48, health.ResetGPU},   // double-bit ECC
	{13, health.RestartApp}, // graphics engine exception
	{95, health.ResetGPU},   // uncontained memory error
	{31, health.RestartApp}, // GPU memory page fault
	{119, health.ResetGPU},  // GSP RPC timeout
	{94, health.RestartApp}, // contained memory error
	{74, health.ResetGPU},   // NVLink error
}

// BenchmarkDetect times a GPU failure from the Xid to the operator, end to end with the default
// flush settings: 48 Xids, one on each GPU of six mock DGX H100s (NVIDIA's NVML mock through the
// real NVML source, one agent per node with its spool, as `gpufleet agent` runs), at random
// moments 300-900 ms apart, while 32 simulated 8-GPU nodes stream beside them, through a real
// Kafka broker (8 partitions) and ingest into chDB. Per Xid it takes the time from queueing it in
// the mock to a poll of gpu_events first returning its row (row), and to query.Drain first listing
// its GPU with the state the Xid asks for (drain). Both polls run every 25 ms on read-only
// sessions of their own, so each figure is late by up to 25 ms plus its query's own time. It
// reports p50 and p99 (nearest rank: of 48, the largest) and their parts: injected → the agent
// tick that read it (tick), that tick → row seen, row seen → drain listing; the drain query's
// median time; and the means of the mock agents' send, ingest's batch age (first message to commit), insert, and
// sample delay (a sample's time to its insert acknowledged); and the share of ingest's time in
// inserts, with inserts per second. Run (one
// pass is the measurement; docs/detect.md):
//
//	go test -run '^$' -bench Detect -benchtime 1x ./internal/detect/
//
// To see what a setting costs (not the defaults, so not the figure), GPUFLEET_DETECT_PARTITIONS
// sets the topics' partitions and GPUFLEET_DETECT_BATCH_AGE ingest's BatchAge (a Go duration).
func BenchmarkDetect(b *testing.B) {
	const mockNodes, simNodes = 6, 32
	cfg := rigConfig{mockNodes: mockNodes, simNodes: simNodes, poll: 25 * time.Millisecond}
	if v := os.Getenv("GPUFLEET_DETECT_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("GPUFLEET_DETECT_PARTITIONS=%q: want a positive count", v)
		}
		cfg.partitions = n
	}
	if v := os.Getenv("GPUFLEET_DETECT_BATCH_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("GPUFLEET_DETECT_BATCH_AGE=%q: want a positive duration", v)
		}
		cfg.batchAge = d
	}
	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		r := startRig(b, ctx, cfg)
		r.waitReady(b, ctx)
		watchCtx, stopWatch := context.WithCancel(ctx)
		r.watch(watchCtx)
		b.StartTimer()
		for k := range mockNodes * nvmlmock.GPUs {
			// Random gaps put the Xids at every phase of the agents' ticks, as real faults fall.
			time.Sleep(300*time.Millisecond + rand.N(600*time.Millisecond))
			f := faults[k%len(faults)]
			r.inject(k%mockNodes, k/mockNodes, f.code, f.want)
		}
		r.waitAll(b, ctx)
		b.StopTimer()
		stopWatch()
		f := r.figures()
		for _, m := range []struct {
			name string
			ds   []time.Duration
		}{
			{"row", f.row}, {"drain", f.drain}, {"tick", f.tick}, {"tick_to_row", f.tickRow}, {"row_to_drain", f.rowDrain},
		} {
			b.ReportMetric(ms(percentile(m.ds, 0.5)), "p50_"+m.name+"_ms")
			b.ReportMetric(ms(percentile(m.ds, 0.99)), "p99_"+m.name+"_ms")
		}
		b.ReportMetric(ms(percentile(f.drainQueryTime, 0.5)), "p50_drain_query_ms")
		b.ReportMetric(ms(histMean(b, "gpufleet_agent_send_seconds", r.agentRegs...)), "mean_agent_send_ms")
		b.ReportMetric(ms(histMean(b, "gpufleet_ingest_batch_age_seconds", r.ingestReg)), "mean_batch_age_ms")
		b.ReportMetric(ms(histMean(b, "gpufleet_ingest_insert_seconds", r.ingestReg)), "mean_insert_ms")
		b.ReportMetric(ms(histMean(b, "gpufleet_ingest_end_to_end_delay_seconds", r.ingestReg)), "mean_sample_delay_ms")
		// The share of ingest's time spent in inserts alone: near 1, its one inserter is the queue
		// every batch waits in, whatever BatchAge says.
		insertSec, inserts := histSum(b, "gpufleet_ingest_insert_seconds", r.ingestReg)
		ran := time.Since(r.ingestStart).Seconds()
		b.ReportMetric(insertSec/ran, "insert_busy_frac")
		b.ReportMetric(float64(inserts)/ran, "inserts_per_s")
		b.ReportMetric(float64(len(f.row)), "xids")
		r.close(b)
		cancel()
	}
}
