package testenv

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Brokers are started by several test binaries at once (go test runs packages in parallel), and
// every outgoing connection on the machine takes a source port from the kernel's ephemeral range.
// A port picked inside that range and checked free can be taken before the broker binds it, which
// is how a CI run on a busy machine lost a cluster start. So ports come from below the ephemeral
// range, a lock file per port keeps two test processes off the same one, and a start that fails
// anyway is tried again on other ports.

// portLease holds ports p … p+n-1 for this process until release.
type portLease struct {
	port  int
	locks []*os.File
}

func (l *portLease) release() {
	for _, f := range l.locks {
		f.Close()
	}
	l.locks = nil
}

// leasePorts finds n consecutive ports that are free on loopback and not held by another test
// process, and holds them.
func leasePorts(n int) (*portLease, error) {
	lo, hi := portRange()
	dir := leaseDir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("lease ports: %w", err)
	}
	for range 100 {
		r, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo-n)))
		if err != nil {
			return nil, fmt.Errorf("lease ports: %w", err)
		}
		l := &portLease{port: lo + int(r.Int64())}
		ok := true
		for i := range n {
			f, err := lockPort(dir, l.port+i)
			if err != nil {
				ok = false
				break
			}
			l.locks = append(l.locks, f)
			if !portFree(l.port + i) {
				ok = false
				break
			}
		}
		if ok {
			return l, nil
		}
		l.release()
	}
	return nil, fmt.Errorf("lease ports: no %d free ports in a row on 127.0.0.1 in [%d, %d)", n, lo, hi)
}

// leaseDir holds one lock file per port, shared by every test process on the machine.
func leaseDir() string { return filepath.Join(os.TempDir(), "gpufleet-test-ports") }

// lockPort takes the lock file of port p without waiting; the lock goes with the process, so a
// test binary that dies leaves nothing held.
func lockPort(dir string, p int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// portRange is where test listeners go: below the kernel's ephemeral ports when there is room
// there, else above them.
func portRange() (lo, hi int) {
	eLo, eHi := 32768, 60999
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			a, errA := strconv.Atoi(f[0])
			b, errB := strconv.Atoi(f[1])
			if errA == nil && errB == nil && a <= b {
				eLo, eHi = a, b
			}
		}
	}
	if eLo-12000 >= 2000 {
		return 12000, eLo
	}
	if eHi+2000 < 65535 {
		return eHi + 1, 65535
	}
	return 20000, 30000 // the whole range is ephemeral: the retries below carry it
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// startAttempts is how many times a broker start is tried on fresh ports before the test fails.
const startAttempts = 3

// startOnFreePorts runs start on n leased ports until it succeeds, at most startAttempts times;
// after a failed attempt it runs undo (stop whatever half-started) and logs why it failed. The
// lease is held until the test ends; stop, if not nil, runs first then.
func startOnFreePorts(t testing.TB, what string, n int, start func(port int) (string, error), undo func()) (string, *portLease) {
	t.Helper()
	var errs []error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		l, err := leasePorts(n)
		if err != nil {
			t.Fatalf("start %s: %v", what, err)
		}
		out, err := start(l.port)
		if err == nil {
			return out, l
		}
		undo()
		l.release()
		err = fmt.Errorf("attempt %d on port %d: %w", attempt, l.port, err)
		t.Logf("start %s: %v", what, err)
		errs = append(errs, err)
		time.Sleep(time.Second)
	}
	t.Fatalf("start %s: %v", what, errors.Join(errs...))
	return "", nil
}

// runScript runs cmd and returns its standard output; a failure carries the script's own message
// and the end of each log in logs, as the test's temporary directory goes with the test.
func runScript(cmd *exec.Cmd, logs ...string) (string, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var b strings.Builder
		fmt.Fprintf(&b, "%v: %s", err, strings.TrimSpace(stderr.String()))
		for _, p := range logs {
			if _, statErr := os.Stat(p); statErr == nil {
				fmt.Fprintf(&b, "\nend of %s:\n%s", p, logTail(p, 30))
			}
		}
		return "", errors.New(b.String())
	}
	return strings.TrimSpace(string(out)), nil
}
