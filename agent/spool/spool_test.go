package spool_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/wire"
)

func batch(i int, size int) spool.Batch {
	return spool.Batch{Rows: uint64(8), Events: uint64(i % 2), Msgs: []wire.Message{
		{Topic: wire.SamplesTopic, Key: []byte(fmt.Sprintf("node-%d", i%3)), Value: bytes.Repeat([]byte{byte(i)}, size)},
	}}
}

// Batches come out in the order they went in, survive a reopen (a restart) with their sequence
// numbers, and are gone once acknowledged.
func TestOrderAndRestart(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		sp.Append(batch(i, 100), map[string]uint64{"node-0": uint64(i + 1)})
	}
	for i := range 4 { // four sent and acknowledged before the "crash"
		b, ok, err := sp.Peek()
		if err != nil || !ok || b.Msgs[0].Value[0] != byte(i) {
			t.Fatalf("peek %d: %v %v %v", i, ok, err, b.Msgs)
		}
		sp.Ack()
	}
	sp.Close()
	sp, err = spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
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
	sp, _ := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
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
	sp, err = spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Batches != 3 {
		t.Fatalf("%d batches after a torn write, want 3", st.Batches)
	}
	sp.Append(batch(3, 50), nil) // appending goes on after the cut
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
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 200, 20 << 10 // 4 MB into a 1 MiB spool
	for i := range n {
		sp.Append(batch(i, size), nil)
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
	if _, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 1000}); err == nil {
		t.Fatal("a 1000-byte cap was accepted")
	}
}

// A spool that reached its cap while Kafka was down, then restarted with Kafka back: the first
// appends, made before the sender has sent anything, drop nothing. (Before, the spool ended the
// outage at the cap itself, and the first append after the restart dropped a whole segment.)
func TestRestartAtCapDropsNothing(t *testing.T) {
	const size = 30 << 10 // a 64-GPU node's cycle is about this
	rec := int64(size + 100)
	for _, extra := range []int{0, 1, 2, 3} { // where in a segment the outage ended
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			dir := t.TempDir()
			sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for sp.Stats().DroppedBatches == 0 { // the outage: every send fails
				sp.SendFailed()
				sp.Append(batch(n, size), nil)
				n++
			}
			// Go on up to the cap, if the spool lets it.
			for i := 0; i < extra || (i < 100 && int64(sp.Stats().Bytes)+rec <= 1<<20); i++ {
				sp.SendFailed()
				sp.Append(batch(n, size), nil)
				n++
			}
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			sp, err = spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			held := sp.Stats().Batches
			sp.Append(batch(n, size), nil) // sampled before the sender's first send
			sp.Append(batch(n+1, size), nil)
			if st := sp.Stats(); st.DroppedBatches != 0 || st.Batches != held+2 || st.Bytes > 1<<20 {
				t.Fatalf("after the restart: %+v; want nothing dropped, %d held, at most 1 MiB", st, held+2)
			}
		})
	}
}

// state.json is written to a temporary file, fsynced, renamed and the directory fsynced, in that
// order; a new segment's directory entry is fsynced before a record in it counts as written.
func TestStateSavedDurably(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	spool.TraceDurability(sp, func(op, name string) {
		ops = append(ops, op+" "+strings.ReplaceAll(name, dir+string(filepath.Separator), ""))
	})
	sp.Append(batch(0, 10), map[string]uint64{"node-0": 1})
	want := []string{"syncdir " + dir, "sync 000000000000.seg", "sync state.json.tmp", "rename state.json.tmp -> state.json", "syncdir " + dir}
	if !slices.Equal(ops, want) {
		t.Fatalf("first append:\n got %q\nwant %q", ops, want)
	}
	ops = nil
	sp.Append(batch(1, 10), map[string]uint64{"node-0": 2})
	if want := want[1:]; !slices.Equal(ops, want) {
		t.Fatalf("second append:\n got %q\nwant %q", ops, want)
	}
	sp.Close()
	if _, err := os.Stat(filepath.Join(dir, "state.json.tmp")); !os.IsNotExist(err) {
		t.Errorf("state.json.tmp left behind: %v", err)
	}
	sp, err = spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if seq := sp.Seq()["node-0"]; seq != 2 || sp.Stats().Batches != 2 {
		t.Fatalf("reopened: seq %d, %d batches; want 2 and 2", seq, sp.Stats().Batches)
	}
}

// A state.json that cannot be read (the empty file an agent before atomic saves could leave after
// a power loss, or damage) does not keep the agent from starting: every batch on disk is sent
// again, and the file is kept aside.
func TestUnreadableStateStarts(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "truncated": `{"head":{"seg":0,"o`, "negative": `{"head":{"seg":-1,"off":5}}`} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			sp, _ := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
			for i := range 3 {
				sp.Append(batch(i, 50), map[string]uint64{"node-0": uint64(i + 1)})
			}
			sp.Peek()
			sp.Ack()
			sp.Close()
			if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatalf("open with a %s state.json: %v", name, err)
			}
			defer sp.Close()
			if st := sp.Stats(); st.Batches != 3 {
				t.Errorf("%d batches held, want all 3 on disk (resent)", st.Batches)
			}
			if b, ok, _ := sp.Peek(); !ok || b.Msgs[0].Value[0] != 0 {
				t.Errorf("first batch %v %+v, want batch 0", ok, b)
			}
			if _, err := os.Stat(filepath.Join(dir, "state.json.corrupt")); err != nil {
				t.Errorf("the unreadable state was not kept aside: %v", err)
			}
		})
	}
}

// Two processes on one spool would interleave records: the second Open is refused until the
// first closes.
func TestOneOpenAtATime(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want in use", err)
	}
	sp.Close()
	sp, err = spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	sp.Close()
}

// The cost of one durable append (segment fsync, state file fsync, rename, directory fsync) on
// this machine's disk, with a 2 KB batch, one 8-GPU node's cycle.
func BenchmarkAppend(b *testing.B) {
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	seq := map[string]uint64{"node-0": 0}
	for i := 0; b.Loop(); i++ {
		seq["node-0"] = uint64(i)
		sp.Append(batch(i, 2000), seq)
		if i%2 == 1 { // the sender keeps up
			sp.Peek()
			sp.Ack()
		}
	}
}
