package spool_test

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// numbered is a batch whose value starts with i, so that order is checked past 256 batches.
func numbered(i, size int) spool.Batch {
	v := make([]byte, max(size, 4))
	binary.LittleEndian.PutUint32(v, uint32(i))
	return spool.Batch{Rows: 8, Events: 1, Msgs: []wire.Message{{Topic: wire.SamplesTopic, Key: []byte("node-0"), Value: v}}}
}

func ids(bs []spool.Batch) []int {
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = int(binary.LittleEndian.Uint32(b.Msgs[0].Value))
	}
	return out
}

// wantIDs fails unless got is from, from+1, ... in order, n of them.
func wantIDs(t *testing.T, what string, got []spool.Batch, from, n int) {
	t.Helper()
	g := ids(got)
	if len(g) != n {
		t.Fatalf("%s: %d batches %v, want %d from %d", what, len(g), g, n, from)
	}
	for i, id := range g {
		if id != from+i {
			t.Fatalf("%s: batches %v, want %d.. in order", what, g, from)
		}
	}
}

func segments(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// PeekN hands out many batches for one request, in order and across segments, bounded by count
// and by bytes (the first whatever its size); AckN removes exactly those acknowledged, and what
// was not acknowledged comes again, also after a restart.
func TestPeekNBoundsAndOrder(t *testing.T) {
	const size = 5000 // a 1 MiB spool has 128 KiB segments: 26 batches each
	rec := int64(size + 8 + 20 + 2 + len(wire.SamplesTopic) + 4 + len("node-0") + 4)
	cases := []struct {
		name       string
		maxBatches int
		maxBytes   int64
		want       int // batches per PeekN
	}{
		{"by count", 7, 1 << 20, 7},
		{"by bytes", 100, 3 * rec, 3},
		{"bytes just short of a record", 100, 3*rec - 1, 2},
		{"first whatever its size", 100, 0, 1},
		{"one per request, as before", 1, 1 << 20, 1},
		{"across every segment", 1000, 16 << 20, 150},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			const n = 150
			for i := range n {
				sp.Append(numbered(i, size), map[string]uint64{"node-0": uint64(i + 1)})
			}
			if segments(t, dir) < 5 {
				t.Fatalf("%d segments, want the batches spread over several", segments(t, dir))
			}
			next := 0
			for next < n {
				bs, err := sp.PeekN(c.maxBatches, c.maxBytes)
				if err != nil {
					t.Fatal(err)
				}
				wantIDs(t, fmt.Sprintf("peek at %d", next), bs, next, min(c.want, n-next))
				again, _ := sp.PeekN(c.maxBatches, c.maxBytes) // unacknowledged: the same again
				wantIDs(t, "peek again", again, next, len(bs))
				sp.AckN(len(bs))
				next += len(bs)
				if st := sp.Stats(); st.Batches != uint64(n-next) {
					t.Fatalf("after acknowledging %d: %d held, want %d", next, st.Batches, n-next)
				}
			}
			if bs, _ := sp.PeekN(c.maxBatches, c.maxBytes); len(bs) != 0 {
				t.Fatalf("%d batches after every one was acknowledged", len(bs))
			}
			if got := segments(t, dir); got != 1 {
				t.Errorf("%d segment files left after everything was acknowledged, want the tail only", got)
			}
		})
	}
}

// Acknowledging part of a request (kafka-go reports per message) removes that part only; a
// restart before the rest is acknowledged sends the rest, not what was acknowledged.
func TestAckNPartialAndRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *spool.Spool {
		sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	sp := open()
	for i := range 60 { // 3 segments
		sp.Append(numbered(i, 5000), nil)
	}
	bs, _ := sp.PeekN(50, 1<<20)
	wantIDs(t, "first request", bs, 0, 50)
	sp.AckN(30) // the first 30 acknowledged, across a segment boundary; the rest failed
	sp.SendFailed()
	bs, _ = sp.PeekN(50, 1<<20)
	wantIDs(t, "after a partial acknowledgement", bs, 30, 30)
	sp.AckN(5)
	if err := sp.Close(); err != nil { // saves the head
		t.Fatal(err)
	}
	sp = open()
	defer sp.Close()
	if st := sp.Stats(); st.Batches != 25 {
		t.Fatalf("reopened: %d held, want 25", st.Batches)
	}
	bs, _ = sp.PeekN(100, 1<<20)
	wantIDs(t, "after the restart", bs, 35, 25)
}

// The size cap may drop the segments of batches being sent; acknowledging them afterwards removes
// nothing else, and sending goes on with the oldest batch kept.
func TestAckNAfterCapDrop(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	const size = 20 << 10
	n := 0
	for ; n < 40; n++ {
		sp.Append(numbered(n, size), nil)
	}
	bs, _ := sp.PeekN(256, 4<<20) // in flight: 40 batches over several segments
	wantIDs(t, "in flight", bs, 0, 40)
	for sp.Stats().DroppedBatches == 0 { // sampling goes on and reaches the cap meanwhile
		sp.Append(numbered(n, size), nil)
		n++
	}
	dropped := int(sp.Stats().DroppedBatches)
	sp.AckN(len(bs))
	st := sp.Stats()
	kept := n - max(dropped, 40)
	if st.Batches != uint64(kept) {
		t.Fatalf("after the acknowledgement %+v: want %d held (%d appended, %d dropped, 40 sent)", st, kept, n, dropped)
	}
	bs, _ = sp.PeekN(1000, 16<<20)
	wantIDs(t, "after the cap drop", bs, n-kept, kept)
}

// Batches the disk refused wait in memory behind those on disk: one request takes disk's and
// then memory's, in order, and memory's are not dropped or moved while in flight.
func TestPeekNDiskThenMemory(t *testing.T) {
	d := fileSizeLimit(t)
	sp, err := spool.Open(d.dir, spool.Options{MaxBytes: 4 << 20, MemoryBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for i := range 5 {
		sp.Append(numbered(i, 2000), nil)
	}
	d.fill(t)
	for i := 5; i < 10; i++ {
		sp.Append(numbered(i, 2000), nil)
	}
	if st := sp.Stats(); st.MemoryBatches != 5 {
		t.Fatalf("%+v: want 5 batches in memory", st)
	}
	bs, _ := sp.PeekN(8, 1<<20) // 5 from disk, 3 from memory
	wantIDs(t, "disk then memory", bs, 0, 8)
	d.free(t)
	sp.Append(numbered(10, 2000), nil) // in flight: memory stays as it is, the new batch joins it
	sp.AckN(8)
	if st := sp.Stats(); st.Batches != 3 {
		t.Fatalf("%+v: want 3 held", st)
	}
	bs, _ = sp.PeekN(8, 1<<20)
	wantIDs(t, "the rest", bs, 8, 3)
	sp.SendFailed()
	sp.Append(numbered(11, 2000), nil) // not in flight: memory goes to disk, in order
	if !sp.Durable() {
		t.Fatal("memory not written to disk once the disk took writes and nothing was in flight")
	}
	bs, _ = sp.PeekN(8, 1<<20)
	wantIDs(t, "from disk again", bs, 8, 4)
}

// BenchmarkPeekN is what one request's read of the spool costs (held under the spool's lock, so
// an append waits for it): 256 batches of a 2-node, 8-GPU cycle's size (about 5.6 KB), 512 KiB
// at most. Run: go test -run '^$' -bench PeekN ./agent/spool/
func BenchmarkPeekN(b *testing.B) {
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	for i := range 300 {
		sp.Append(numbered(i, 5600), nil)
	}
	b.ResetTimer()
	for range b.N {
		bs, err := sp.PeekN(256, 512<<10)
		if err != nil || len(bs) < 90 {
			b.Fatalf("%d batches, %v", len(bs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/peek")
}
