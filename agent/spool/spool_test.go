package spool_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gpufleet/gpufleet/agent/spool"
)

func batch(i int, size int) spool.Batch {
	return spool.Batch{Rows: uint64(8), Events: uint64(i % 2), Msgs: []spool.Message{
		{Topic: "gpu.samples", Key: []byte(fmt.Sprintf("node-%d", i%3)), Value: bytes.Repeat([]byte{byte(i)}, size)},
	}}
}

// Batches come out in the order they went in, survive a reopen (a restart) with their sequence
// numbers, and are gone once acknowledged.
func TestOrderAndRestart(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := sp.Append(batch(i, 100), map[string]uint64{"node-0": uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 { // four sent and acknowledged before the "crash"
		b, ok, err := sp.Peek()
		if err != nil || !ok || b.Msgs[0].Value[0] != byte(i) {
			t.Fatalf("peek %d: %v %v %v", i, ok, err, b.Msgs)
		}
		if err := sp.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	sp, err = spool.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Batches != 6 {
		t.Fatalf("after reopen %d batches held, want 6", st.Batches)
	}
	if seq := sp.Seq()["node-0"]; seq != 10 {
		t.Errorf("sequence after reopen %d, want 10", seq)
	}
	for i := 4; i < 10; i++ {
		b, ok, err := sp.Peek()
		if err != nil || !ok || b.Msgs[0].Value[0] != byte(i) || b.Events != uint64(i%2) {
			t.Fatalf("after reopen, peek %d: %v %v %+v", i, ok, err, b)
		}
		sp.Ack()
	}
	if _, ok, _ := sp.Peek(); ok {
		t.Fatal("spool not empty after every batch was acknowledged")
	}
}

// A record torn by a crash mid-write is cut off on reopen; the whole ones before it are kept.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	sp, _ := spool.Open(dir, 1<<20)
	for i := range 3 {
		sp.Append(batch(i, 50), nil)
	}
	sp.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3}) // a header promising 200 bytes, then the crash
	f.Close()
	sp, err = spool.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Batches != 3 {
		t.Fatalf("%d batches after a torn write, want 3", st.Batches)
	}
	if err := sp.Append(batch(3, 50), nil); err != nil { // appending goes on after the cut
		t.Fatal(err)
	}
	for i := range 4 {
		b, ok, _ := sp.Peek()
		if !ok || b.Msgs[0].Value[0] != byte(i) {
			t.Fatalf("peek %d: %v %+v", i, ok, b)
		}
		sp.Ack()
	}
}

// At the size cap the oldest batches are dropped, whole segments at a time, and counted; the
// newest are kept.
func TestCapDropsOldest(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 200, 20 << 10 // 4 MB into a 1 MiB spool
	for i := range n {
		if err := sp.Append(batch(i, size), nil); err != nil {
			t.Fatal(err)
		}
	}
	st := sp.Stats()
	if st.Bytes > 1<<20 || st.DroppedBatches == 0 || st.DroppedBatches+st.Batches != n || st.DroppedRows != 8*st.DroppedBatches {
		t.Fatalf("stats %+v: want at most 1 MiB held, the rest dropped and counted", st)
	}
	b, ok, _ := sp.Peek()
	if !ok || int(b.Msgs[0].Value[0]) != int(st.DroppedBatches%256) {
		t.Errorf("oldest kept batch is %d, want %d", b.Msgs[0].Value[0], st.DroppedBatches%256)
	}
}

func TestOpenRejectsTinyCap(t *testing.T) {
	if _, err := spool.Open(t.TempDir(), 1000); err == nil {
		t.Fatal("a 1000-byte cap was accepted")
	}
}
