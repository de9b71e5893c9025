package spool_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gpufleet/gpufleet/agent/spool"
)

// fullDisk is a directory whose disk can be made to refuse writes and to take them again.
type fullDisk struct {
	dir        string
	fill, free func(t *testing.T)
}

// fileSizeLimit refuses every write that grows a file (RLIMIT_FSIZE 0, EFBIG), as a full disk
// does, with files still created; it needs no privilege. Go ignores the SIGXFSZ that comes with it.
func fileSizeLimit(t *testing.T) fullDisk {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	set := func(t *testing.T, cur uint64) {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: cur, Max: old.Max}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { set(t, old.Cur) })
	return fullDisk{dir: t.TempDir(), fill: func(t *testing.T) { set(t, 0) }, free: func(t *testing.T) { set(t, old.Cur) }}
}

// smallTmpfs is a real 2 MiB tmpfs filled to the last byte by another file (ENOSPC for the spool's
// segments and state alike); mounting needs root, so without it the case is skipped.
func smallTmpfs(t *testing.T) fullDisk {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); the file-size-limit case covers a refusing disk", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	return fullDisk{dir: filepath.Join(dir, "spool"),
		fill: func(t *testing.T) {
			f, err := os.Create(filler)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			chunk := make([]byte, 4096)
			for {
				if _, err := f.Write(chunk); err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("filling the tmpfs: %v", err)
					}
					return
				}
			}
		},
		free: func(t *testing.T) {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}}
}

// When the disk refuses writes, Append neither fails nor loses order: batches wait in memory,
// behind those on disk, and are sent from there; past the memory cap the oldest of them are dropped
// and counted; once the disk takes writes again they go to disk, and a reopen finds every batch
// not dropped, in order, whole.
func TestDiskRefusesWrites(t *testing.T) {
	for name, disk := range map[string]func(*testing.T) fullDisk{"file size limit": fileSizeLimit, "full tmpfs": smallTmpfs} {
		t.Run(name, func(t *testing.T) {
			d := disk(t)
			sp, err := spool.Open(d.dir, spool.Options{MaxBytes: 4 << 20, MemoryBytes: 20 << 10})
			if err != nil {
				t.Fatal(err)
			}
			next := 0
			add := func(k int) {
				for range k {
					sp.Append(batch(next, 2000), map[string]uint64{"node-0": uint64(next + 1)})
					next++
				}
			}
			expect := func(want int) {
				t.Helper()
				b, ok, err := sp.Peek()
				if err != nil || !ok || b.Msgs[0].Value[0] != byte(want) {
					got := -1
					if ok {
						got = int(b.Msgs[0].Value[0])
					}
					t.Fatalf("peek: %v %v, batch %d; want batch %d", ok, err, got, want)
				}
				sp.Ack()
			}
			add(3)
			d.fill(t)
			add(3) // refused by the disk: held in memory
			st := sp.Stats()
			if st.WriteErrors == 0 || st.MemoryBatches != 3 || st.Batches != 6 || sp.Durable() {
				t.Fatalf("disk full: %+v durable %v; want write errors, 3 of 6 batches in memory", st, sp.Durable())
			}
			for i := range 4 { // sent while the disk is full: disk first, then memory
				expect(i)
			}
			add(40) // 80 KB into 20 KiB of memory: the oldest are dropped
			st = sp.Stats()
			if st.UnspooledBatches == 0 || st.Batches+st.UnspooledBatches != uint64(next-4) || st.UnspooledRows != 8*st.UnspooledBatches {
				t.Fatalf("memory full: %+v; want the oldest dropped and counted", st)
			}
			firstKept := 4 + int(st.UnspooledBatches) // 4 sent, then the dropped ones
			if b, ok, _ := sp.Peek(); !ok || int(b.Msgs[0].Value[0]) != firstKept {
				t.Fatalf("oldest batch kept in memory: %v, want %d", ok, firstKept)
			}
			sp.SendFailed() // Kafka is down too: the sender lets the batch go until its next try
			d.free(t)
			add(1) // the disk takes writes again: memory goes to disk, in order
			if st := sp.Stats(); st.MemoryBatches != 0 || !sp.Durable() {
				t.Fatalf("disk free again: %+v; want everything on disk", st)
			}
			held := sp.Stats().Batches
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			sp, err = spool.Open(d.dir, spool.Options{MaxBytes: 4 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if st := sp.Stats(); st.Batches != held {
				t.Fatalf("reopened: %d batches, want %d", st.Batches, held)
			}
			for i := firstKept; i < next; i++ {
				expect(i)
			}
			if seq := sp.Seq()["node-0"]; seq != uint64(next) {
				t.Errorf("sequence %d after reopen, want %d", seq, next)
			}
		})
	}
}
