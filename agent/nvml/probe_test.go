//go:build cgo

package nvml

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
)

// A probe of the mock DGX: every NVML call the source makes is timed and counted, each GPU's
// readings are tallied per metric (the fan absent on SXM boards, GPM absent on the first tick
// only), MIG instances are listed, and the XID subscription still reaches the real devices.
func TestProbe(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.partition(3, 0)
	// The adapter registers only its own devices for XIDs: the timed ones must reach it unwrapped.
	var registered atomic.Int32
	for _, d := range n.devs {
		d.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { registered.Add(1); return gonvml.SUCCESS }
	}
	rep, err := Probe(context.Background(), FromNVML(n.srv), 10*time.Millisecond, 35*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ticks < 3 || len(rep.GPUs) != 9 || rep.Driver != "550.54.15" {
		t.Fatalf("ticks %d, gpus %d, driver %q: want ≥ 3 ticks of 8 GPUs and a MIG instance", rep.Ticks, len(rep.GPUs), rep.Driver)
	}
	calls := map[string]CallSummary{}
	for _, c := range rep.Calls {
		calls[c.Op] = c
		if c.P50 > c.P99 || c.P99 > c.Max {
			t.Errorf("%s: p50 %v p99 %v max %v out of order", c.Op, c.P50, c.P99, c.Max)
		}
	}
	// Power is asked of each of the 8 GPUs every tick; FanSpeed answers not supported on each.
	if c := calls["Power"]; c.Calls != 8*rep.Ticks || c.Errors != 0 {
		t.Errorf("Power: %+v, want %d calls without errors", c, 8*rep.Ticks)
	}
	if c := calls["FanSpeed"]; c.Calls != 8*rep.Ticks || c.Errors != 8*rep.Ticks {
		t.Errorf("FanSpeed: %+v, want %d calls, all not supported", c, 8*rep.Ticks)
	}
	if c := calls["MIGInstances"]; c.Calls != 1 {
		t.Errorf("MIGInstances asked %d times, want once (GPU 3)", c.Calls)
	}
	if c := calls["WatchXID"]; c.Calls != 1 || c.Errors != 0 || registered.Load() != 8 {
		t.Errorf("WatchXID: %+v, %d GPUs registered; want one call that subscribed all 8", c, registered.Load())
	}
	rows := 9 * rep.Ticks
	want := map[string]int{"power_w": 8 * rep.Ticks, "fan_pct": 0, "fb_used_mib": rows, "sm_active": 9 * (rep.Ticks - 1)}
	for _, m := range rep.Metrics {
		if w, ok := want[m.Column]; ok && (m.Present != w || m.Rows != rows) {
			t.Errorf("%s present %d/%d, want %d/%d", m.Column, m.Present, m.Rows, w, rows)
		}
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"driver 550.54.15", "MIG instance of " + n.devs[3].UUID, "FanSpeed", "fan_pct                  0/"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
}
