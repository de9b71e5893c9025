package answercost_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// fleet is a seeded fleet and the largest by-GPU series answer over it that a reader capped at
// cap cells gives: gpus × buckets cells, every bucket with a reading.
type fleet struct {
	rd          store.Store
	from, to    time.Time
	step        time.Duration
	gpus, cells int
	cap         uint64
}

// largest seeds nodes × 8 GPUs with one sample every step over buckets steps and opens a reader
// whose answers hold at most cap cells (cap ≥ the answer's cells).
func largest(tb testing.TB, nodes, buckets int, step time.Duration, cap uint64) *fleet {
	tb.Helper()
	st := testenv.CHDB(tb)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		tb.Fatal(err)
	}
	to := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	from := to.Add(-time.Duration(buckets) * step)
	if _, err := (seed.Fleet{Seed: 3, Nodes: nodes, GPUsPerNode: 8, Clusters: []string{"cl-0", "cl-1"},
		From: from, To: to, Step: step}).Write(ctx, st); err != nil {
		tb.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(tb), st.Database(), testenv.LibCHDB(tb), store.Limits{MaxResultRows: cap})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rd.Close() })
	f := &fleet{rd: rd, from: from, to: to, step: step, gpus: nodes * 8, cells: nodes * 8 * buckets, cap: cap}
	if uint64(f.cells) > cap {
		tb.Fatalf("%d cells over a cap of %d: not a legal answer", f.cells, cap)
	}
	return f
}

// pluginCall answers the fleet's series through the plugin's QueryData and returns the cells of
// its frame.
func (f *fleet) pluginCall(tb testing.TB) func() int {
	ds := plugin.New(f.rd, func() time.Time { return f.to })
	raw, _ := json.Marshal(map[string]any{"metric": "gpu_util", "agg": "avg", "groupBy": []string{"gpu"}, "fill": true})
	req := &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", JSON: raw,
		TimeRange: backend.TimeRange{From: f.from, To: f.to}, Interval: f.step,
		MaxDataPoints: int64(f.to.Sub(f.from) / f.step)}}}
	return func() int {
		resp, err := ds.QueryData(context.Background(), req)
		if err != nil {
			tb.Fatal(err)
		}
		r := resp.Responses["A"]
		if r.Error != nil {
			tb.Fatal(r.Error)
		}
		n := 0
		for _, fr := range r.Frames {
			n += fr.Rows() * (len(fr.Fields) - 1)
		}
		return n
	}
}

// apiCall answers the fleet's series through the HTTP API's handler into a writer that keeps
// only a hash of the body (a recorder would hold the whole body and hide what the handler holds),
// and returns the points in the answer and the body's hash.
func (f *fleet) apiCall(tb testing.TB) func() (int, string) {
	h := httpapi.Handler(f.rd, func() time.Time { return f.to })
	url := fmt.Sprintf("/api/v1/series?metric=gpu_util&agg=avg&by=gpu&fill=true&step=%s&from=%s&to=%s",
		f.step, f.from.Format(time.RFC3339), f.to.Format(time.RFC3339))
	return func() (int, string) {
		w := &hashWriter{h: http.Header{}, sum: sha256.New(), code: http.StatusOK}
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, url, nil))
		if w.code != http.StatusOK {
			tb.Fatalf("GET %s: %d", url, w.code)
		}
		return w.points, fmt.Sprintf("%x", w.sum.Sum(nil))
	}
}

// hashWriter is an http.ResponseWriter that hashes the body and counts its points (`"t":`) as
// it goes.
type hashWriter struct {
	h      http.Header
	sum    hash.Hash
	code   int
	points int
	tail   []byte
}

func (w *hashWriter) Header() http.Header { return w.h }
func (w *hashWriter) WriteHeader(c int)   { w.code = c }
func (w *hashWriter) Write(p []byte) (int, error) {
	w.sum.Write(p)
	// "t": may straddle two writes: carry the last 3 bytes over.
	buf := append(w.tail, p...)
	for i := 0; i+4 <= len(buf); i++ {
		if buf[i] == '"' && buf[i+1] == 't' && buf[i+2] == '"' && buf[i+3] == ':' {
			w.points++
		}
	}
	if len(buf) >= 3 {
		w.tail = append(w.tail[:0], buf[len(buf)-3:]...)
	} else {
		w.tail = append(w.tail[:0], buf...)
	}
	return len(p), nil
}

// cost is what one call cost the Go heap.
type cost struct {
	peak  uint64 // the most heap in objects during the call, above what was live before it
	alloc uint64 // bytes allocated during the call
	dur   time.Duration
}

var heapObjects = "/memory/classes/heap/objects:bytes"

// measure runs call after a collection and samples the heap in a goroutine while it runs.
// Sampling may miss the very top of a spike, so peak errs low by at most what the call allocates
// between two samples.
func measure(call func()) cost {
	runtime.GC()
	s := []metrics.Sample{{Name: heapObjects}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	base, alloc0 := s[0].Value.Uint64(), s[1].Value.Uint64()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: heapObjects}}
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t0 := time.Now()
	call()
	d := time.Since(t0)
	metrics.Read(s)
	close(stop)
	wg.Wait()
	peak = max(peak, s[0].Value.Uint64())
	c := cost{alloc: s[1].Value.Uint64() - alloc0, dur: d}
	if peak > base {
		c.peak = peak - base
	}
	return c
}

// BenchmarkLargestAnswer answers the largest series the default cell cap (store.DefaultLimits'
// max_result_rows, 1,000,000) allows, 1,024 GPUs × 900 buckets of 4 s, through the plugin and the
// HTTP API, and reports the cells, the peak Go heap during one call above what was live before
// it, the bytes allocated per cell and the call's time. Run (seeding takes a minute):
//
//	GPUFLEET_LIBCHDB=$(deploy/dev/chdb.sh install) go test -run '^$' -bench LargestAnswer -benchtime 3x ./internal/answercost/
func BenchmarkLargestAnswer(b *testing.B) {
	f := largest(b, 128, 900, 4*time.Second, store.DefaultLimits().MaxResultRows)
	report := func(b *testing.B, cells int, total cost, worst uint64) {
		b.ReportMetric(float64(cells), "cells")
		b.ReportMetric(float64(worst)/(1<<20), "peak_heap_MiB")
		b.ReportMetric(float64(total.alloc)/float64(b.N)/float64(cells), "alloc_B/cell")
		b.ReportMetric(float64(total.dur.Milliseconds())/float64(b.N), "ms/call")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("plugin", func(b *testing.B) {
		call := f.pluginCall(b)
		var total cost
		var worst uint64
		cells := 0
		for range b.N {
			c := measure(func() { cells = call() })
			total.alloc, total.dur, worst = total.alloc+c.alloc, total.dur+c.dur, max(worst, c.peak)
		}
		if cells != f.cells {
			b.Fatalf("%d cells, want %d", cells, f.cells)
		}
		report(b, cells, total, worst)
	})
	b.Run("httpapi", func(b *testing.B) {
		call := f.apiCall(b)
		var total cost
		var worst uint64
		cells := 0
		for range b.N {
			c := measure(func() { cells, _ = call() })
			total.alloc, total.dur, worst = total.alloc+c.alloc, total.dur+c.dur, max(worst, c.peak)
		}
		if cells != f.cells {
			b.Fatalf("%d points, want %d", cells, f.cells)
		}
		report(b, cells, total, worst)
	})
}

// What one legal answer may cost the Go heap, per cell of the cap and in all. The bound is on the
// bytes the call allocates, which no peak of its heap can exceed (what it holds at any moment it
// allocated during the call): a sampled peak errs low by whatever the sampler missed, and is
// only logged. An answer needs about 100 B a cell decoded (four boxed values and the row holding
// them), 40 B as a series point (up to twice that while its slice grows), 16 B in a frame, and
// the parsing of its bucket time: measured 290 B a cell through the plugin and 380 B through the
// API, whose points also pass through the encoder's buffer. Before the in-place decoding and the
// streamed API answer they took 870 B and 1,120 B. The constant is the part of a call that does
// not grow with the answer: compiling the query, the engine's parameters, the SDK's response,
// the API's 64 KiB write buffer and the decoder's shared strings (at most 4,096 a column before
// it shares only repeats), well under 1 MiB, taken four times over.
const (
	allocPerCell = 480
	allocFixed   = 4 << 20
)

// The largest answer a reader capped at 100,000 cells gives (128 GPUs × 780 buckets of 4 s) costs
// at most allocPerCell × cap + allocFixed bytes, and so holds at most that at its peak, through
// the plugin and through the HTTP API; and the API's answer is the same bytes run after run.
func TestLargestAnswerPeakHeap(t *testing.T) {
	const cellCap = 100_000
	f := largest(t, 16, 780, 4*time.Second, cellCap)
	bound := uint64(allocPerCell*cellCap + allocFixed)
	plugin, api := f.pluginCall(t), f.apiCall(t)
	var sums []string
	apiRun := func() int {
		n, sum := api()
		sums = append(sums, sum)
		return n
	}
	for _, c := range []struct {
		name string
		call func() int
	}{{"plugin", plugin}, {"httpapi", apiRun}, {"httpapi again", apiRun}} {
		t.Run(c.name, func(t *testing.T) {
			cells := 0
			got := measure(func() { cells = c.call() })
			t.Logf("%d cells: %.0f B allocated a cell, %.1f MiB in all; sampled peak %.1f MiB", cells,
				float64(got.alloc)/float64(cells), float64(got.alloc)/(1<<20), float64(got.peak)/(1<<20))
			if cells != f.cells {
				t.Fatalf("%d cells, want %d", cells, f.cells)
			}
			if got.alloc > bound || got.peak > bound {
				t.Errorf("allocated %d B, sampled peak %d B: over the bound %d B (%d B a cell of the cap %d + %d B)",
					got.alloc, got.peak, bound, allocPerCell, cellCap, allocFixed)
			}
		})
	}
	if len(sums) == 2 && sums[0] != sums[1] {
		t.Errorf("the API answered %s, then %s", sums[0], sums[1])
	}
}
