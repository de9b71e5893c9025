//go:build cgo

package nvml

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// resetBatch empties b for the next cycle and keeps every slice's room (its columns, their values
// and bitmaps), as agent.resetBatch does between sends: refilling it then allocates nothing.
func resetBatch(b *wirepb.SampleBatch) {
	b.TimeUnixMs, b.Gpu = b.TimeUnixMs[:0], b.Gpu[:0]
	for _, c := range b.Metrics {
		c.Values, c.Counts, c.Present = c.Values[:0], c.Counts[:0], c.Present[:0]
	}
}

// TestSampleAllocs holds the source to no allocation per cycle in steady state on an 8-GPU H100
// node, with the readings a real H100 gives: a fan and several fields not supported (errors on
// every tick), GPM answering from the second tick, columns with presence bitmaps. Encoding adds
// exactly one: the message's bytes, which the agent hands to the producer or spool to keep.
//
// The mocks record every NVML call in slices that grow by doubling; over runs cycles after as many
// warm-up cycles each slice grows at most twice, far fewer times than runs in all, so
// AllocsPerRun's integer mean rounds them away while one allocation of the source's own per cycle
// would show as 1.
func TestSampleAllocs(t *testing.T) {
	tests := []struct {
		name       string
		partitions [][]int // per partitioned GPU: its index, then its instances' MIG device indexes
		rows       int
	}{
		{"8 GPUs", nil, 8},
		{"8 GPUs, 3 MIG instances", [][]int{{2, 0, 3}, {5, 1}}, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, dgxh100.New())
			for _, p := range tt.partitions {
				n.partition(p[0], p[1:]...)
			}
			sampleAllocs(t, n, tt.rows)
		})
	}
}

func sampleAllocs(t *testing.T, n *node, rows int) {
	const runs = 200
	s := newSource(t, n, nil)
	cluster, host := s.Identity()
	b := &wirepb.SampleBatch{AgentId: host, Cluster: cluster, Node: host}
	var ev []*wirepb.Event
	cycle := func() {
		resetBatch(b)
		ev = s.Sample(t0, b, ev[:0])
	}
	for range runs {
		cycle()
	}
	if len(b.TimeUnixMs) != rows || len(ev) != 0 {
		t.Fatalf("warm-up cycle: %d rows, %d events; want %d rows, no events", len(b.TimeUnixMs), len(ev), rows)
	}
	absent := 0
	for _, c := range b.Metrics {
		if len(c.Present) > 0 {
			absent++
		}
	}
	if absent == 0 {
		t.Fatal("no column has an absent reading: the bitmap path is not exercised")
	}
	tests := []struct {
		name string
		f    func()
		want float64
	}{
		{"Sample", cycle, 0},
		{"Sample+EncodeSamples", func() {
			cycle()
			if _, err := wire.EncodeSamples(b); err != nil {
				t.Fatal(err)
			}
		}, 1},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(runs, tt.f); got != tt.want {
			t.Errorf("%s: %v allocations per cycle in steady state, want %v", tt.name, got, tt.want)
		}
	}
}

// TestReusedBatchEncodesAsNew: a batch refilled after resetBatch encodes to the very bytes a new
// batch does, tick after tick, while readings come and go (a GPU throttles, GPM answers from the
// second tick, an ECC count moves) and with two ticks per batch, where bitmaps grow past rows
// already held.
func TestReusedBatchEncodesAsNew(t *testing.T) {
	for _, ticksPerBatch := range []int{1, 2, 3} {
		n := newNode(t, dgxh100.New()) // one node, so both read the same GPUs
		sNew, sReused := newSource(t, n, nil), newSource(t, n, nil)
		cluster, host := sNew.Identity()
		reused := &wirepb.SampleBatch{AgentId: host, Cluster: cluster, Node: host}
		for batch := range 4 {
			fresh := &wirepb.SampleBatch{AgentId: host, Cluster: cluster, Node: host}
			resetBatch(reused)
			for k := range ticksPerBatch {
				n.reasons[batch%8].Store(uint64(0x40 * (k % 2)))
				n.sbe[3].Store(uint64(batch))
				n.noGPM[5].Store(true)
				at := t0.Add(time.Duration(batch*ticksPerBatch+k) * time.Second)
				sNew.Sample(at, fresh, nil)
				sReused.Sample(at, reused, nil)
			}
			want, err := wire.EncodeSamples(fresh)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.EncodeSamples(reused)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%d ticks per batch, batch %d: the reused batch encodes to %d bytes unlike the new one's %d", ticksPerBatch, batch, len(got), len(want))
			}
		}
	}
}

// TestPresentBitmap: the bitmap markAbsent and growPresent build a tick at a time, in the room
// of a previous batch's bitmap, is wire.SetPresent's of the whole column.
func TestPresentBitmap(t *testing.T) {
	tests := []struct {
		name   string
		ticks  [][]bool // per tick, each new row's presence
		reused []byte   // the room a previous batch left: len 0, stale contents
	}{
		{"all present", [][]bool{{true, true}, {true, true}}, nil},
		{"first row absent", [][]bool{{false, true, true}}, nil},
		{"absent on the second tick only", [][]bool{{true, true, true, true, true}, {true, true, true, true, false}}, nil},
		{"absent then present across a byte", [][]bool{{false, true, true, true, true, true, true}, {true, true, true}}, nil},
		{"every row absent", [][]bool{{false, false, false, false, false, false, false, false, false}}, nil},
		{"stale room", [][]bool{{true, false}, {true, true, true, true, true, true, true, true, false}}, []byte{0, 0x5a, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bm := tt.reused[:0]
			var all []bool
			for _, tick := range tt.ticks { // as fill does
				rows := len(all) + len(tick)
				for _, ok := range tick {
					if all = append(all, ok); !ok {
						bm = markAbsent(bm, rows, len(all)-1)
					}
				}
				if len(bm) > 0 {
					bm = growPresent(bm, rows)
				}
			}
			want := wire.SetPresent(len(all), func(i int) bool { return all[i] })
			if !bytes.Equal(bm, want) {
				t.Errorf("bitmap %08b, want %08b", bm, want)
			}
		})
	}
}

// TestSharedErrorsNameTheirCall: errors are built once per call, field and return code, so each
// still names its own call and field and wraps its kind, also past the cache's bound.
func TestSharedErrorsNameTheirCall(t *testing.T) {
	tests := []struct {
		err      error
		op, name string
		kind     error
	}{
		{wrap("nvmlDeviceGetFanSpeed", gonvml.ERROR_NOT_SUPPORTED), "nvmlDeviceGetFanSpeed", "ERROR_NOT_SUPPORTED", ErrNotSupported},
		{wrap("nvmlDeviceGetPowerUsage", gonvml.ERROR_NOT_SUPPORTED), "nvmlDeviceGetPowerUsage", "ERROR_NOT_SUPPORTED", ErrNotSupported},
		{wrap("nvmlDeviceGetPowerUsage", gonvml.ERROR_GPU_IS_LOST), "nvmlDeviceGetPowerUsage", "ERROR_GPU_IS_LOST", ErrGPULost},
		{wrapField(gonvml.FI_DEV_MEMORY_TEMP, gonvml.ERROR_NOT_SUPPORTED), fmt.Sprintf("nvmlDeviceGetFieldValues(field %d)", gonvml.FI_DEV_MEMORY_TEMP), "ERROR_NOT_SUPPORTED", ErrNotSupported},
		{wrapField(gonvml.FI_DEV_PCIE_REPLAY_COUNTER, gonvml.ERROR_UNKNOWN), fmt.Sprintf("nvmlDeviceGetFieldValues(field %d)", gonvml.FI_DEV_PCIE_REPLAY_COUNTER), "ERROR_UNKNOWN", nil},
		{wrap(fieldValuesOp, gonvml.ERROR_NOT_SUPPORTED), fieldValuesOp, "ERROR_NOT_SUPPORTED", ErrNotSupported},
	}
	// Fill the cache, so that what follows is built afresh, and must say the same; then give the
	// other tests (TestSampleAllocs) their cache back.
	errCache.Lock()
	saved := errCache.m
	errCache.m = map[errKey]*Error{}
	errCache.Unlock()
	t.Cleanup(func() { errCache.Lock(); errCache.m = saved; errCache.Unlock() })
	for i := range maxErrs {
		_ = wrapField(1<<20+uint32(i), gonvml.ERROR_UNKNOWN)
	}
	tests = append(tests, struct {
		err      error
		op, name string
		kind     error
	}{wrap("nvmlDeviceGetTemperature", gonvml.ERROR_NOT_SUPPORTED), "nvmlDeviceGetTemperature", "ERROR_NOT_SUPPORTED", ErrNotSupported})
	for _, tt := range tests {
		var e *Error
		if !errors.As(tt.err, &e) || e.Op != tt.op || e.Name != tt.name || e.Kind != tt.kind {
			t.Errorf("%v: want op %q, name %q, kind %v", tt.err, tt.op, tt.name, tt.kind)
		}
	}
	if wrap("nvmlDeviceGetFanSpeed", gonvml.SUCCESS) != nil || wrapField(gonvml.FI_DEV_MEMORY_TEMP, gonvml.SUCCESS) != nil {
		t.Error("SUCCESS wrapped as an error")
	}
}
