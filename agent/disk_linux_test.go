package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// fullDisk is a directory whose disk can be made to refuse writes and to take them again; around
// runs f with the refusal lifted for this process's children (a broker stopped or resumed).
type fullDisk struct {
	dir        string
	fill, free func(t *testing.T)
	around     func(t *testing.T, f func())
}

// fileSizeLimit refuses every write that grows a file (RLIMIT_FSIZE 0: EFBIG), as a full disk
// does, with files still created; it needs no privilege. Go ignores the SIGXFSZ that comes with it.
func fileSizeLimit(t *testing.T) fullDisk {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	var cur uint64 = old.Cur
	set := func(t *testing.T, v uint64) {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: v, Max: old.Max}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { set(t, old.Cur) })
	return fullDisk{dir: t.TempDir(),
		fill: func(t *testing.T) { cur = 0; set(t, 0) },
		free: func(t *testing.T) { cur = old.Cur; set(t, old.Cur) },
		around: func(t *testing.T, f func()) {
			set(t, old.Cur)
			defer set(t, cur)
			f()
		}}
}

// smallTmpfs is a real 4 MiB tmpfs filled to the last byte by another file (ENOSPC for segments
// and state alike); mounting needs root, so without it the case is skipped.
func smallTmpfs(t *testing.T) fullDisk {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); the file-size-limit case covers a refusing disk", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	return fullDisk{dir: filepath.Join(dir, "state"),
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
		},
		around: func(t *testing.T, f func()) { f() }}
}
