package testenv

import (
	"errors"
	"net"
	"strconv"
	"testing"
)

func TestLeasePortsBelowEphemeralAndExclusive(t *testing.T) {
	lo, hi := portRange()
	held := map[int]bool{}
	var leases []*portLease
	for range 20 {
		l, err := leasePorts(6)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		for i := range 6 {
			p := l.port + i
			if p < lo || p >= hi {
				t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
			}
			if held[p] {
				t.Fatalf("port %d leased twice", p)
			}
			held[p] = true
			// Another process's view: the lock file of a held port cannot be taken.
			if f, err := lockPort(leaseDir(), p); err == nil {
				f.Close()
				t.Fatalf("lock of leased port %d taken again", p)
			}
		}
	}
	for _, l := range leases {
		l.release()
	}
	if f, err := lockPort(leaseDir(), leases[0].port); err != nil {
		t.Fatalf("released port %d still locked: %v", leases[0].port, err)
	} else {
		f.Close()
	}
}

func TestLeasePortsSkipsPortsInUse(t *testing.T) {
	lo, hi := portRange()
	// Occupy every even port of a slice of the range: no run of two may include one.
	var ls []net.Listener
	busy := map[int]bool{}
	for p := lo; p < hi && len(ls) < 200; p += 2 {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		busy[p] = true
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 50 {
		l, err := leasePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		if busy[l.port] || busy[l.port+1] {
			t.Fatalf("leased %d…%d, one of which is listening", l.port, l.port+1)
		}
		l.release()
	}
}

func TestStartOnFreePortsRetriesOnOtherPorts(t *testing.T) {
	var tried []int
	undone := 0
	out, lease := startOnFreePorts(t, "thing", 2, func(port int) (string, error) {
		tried = append(tried, port)
		if len(tried) < startAttempts {
			return "", errors.New("bind: address already in use")
		}
		return "up on " + strconv.Itoa(port), nil
	}, func() { undone++ })
	defer lease.release()
	if len(tried) != startAttempts || undone != startAttempts-1 {
		t.Fatalf("tried %v, undone %d times; want %d tries and %d undos", tried, undone, startAttempts, startAttempts-1)
	}
	if out != "up on "+strconv.Itoa(lease.port) || lease.port != tried[len(tried)-1] {
		t.Fatalf("out %q, lease on %d, tried %v", out, lease.port, tried)
	}
}
