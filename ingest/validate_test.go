package ingest

import (
	"math"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// A counter reading at or over 2^63 is a negative number sent unsigned: that one reading is stored
// as NULL and counted, the other GPUs' readings of the same message are kept.
func TestSampleColumnsCounterBound(t *testing.T) {
	tests := []struct {
		name     string
		v        uint64
		wantNull bool
	}{
		{name: "zero", v: 0},
		{name: "a year of 1 kW in mJ", v: 31_536_000_000_000},
		{name: "2^63-1", v: math.MaxInt64},
		{name: "2^63", v: math.MaxInt64 + 1, wantNull: true},
		{name: "uint64(-5)", v: 18446744073709551611, wantNull: true},
		{name: "max uint64", v: math.MaxUint64, wantNull: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			ms := now.UnixMilli()
			b := &wirepb.SampleBatch{AgentId: "a", Seq: 1, Cluster: "c", Node: "n",
				Gpus:       []*wirepb.GPU{{Index: 0, Uuid: "GPU-0"}, {Index: 1, Uuid: "GPU-1"}},
				TimeUnixMs: []int64{ms, ms}, Gpu: []uint32{0, 1},
				Metrics: []*wirepb.MetricColumn{
					{Metric: uint32(gpumetric.Energy), Counts: []uint64{tt.v, 1234}},
					{Metric: uint32(gpumetric.ECCSingleVolatile), Counts: []uint64{tt.v, 7}},
					{Metric: uint32(gpumetric.GPUUtil), Values: []float64{50, 60}},
				}}
			data, err := wire.EncodeSamples(b)
			if err != nil {
				t.Fatal(err)
			}
			var dec wire.SampleDecoder
			sb, err := dec.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			c := newSampleColumns()
			if err := c.check(sb, now); err != nil {
				t.Fatalf("check rejected the whole message: %v", err)
			}
			c.appendBatch(sb)
			wantNulled := uint64(0)
			if tt.wantNull {
				wantNulled = 1
			}
			for _, id := range []gpumetric.ID{gpumetric.Energy, gpumetric.ECCSingleVolatile} {
				i := gpumetric.Index(id)
				col := c.counters[i]
				if got := col.Null[0] == 1; got != tt.wantNull {
					t.Errorf("%s row 0 (%d): null %v, want %v", gpumetric.All()[i].Column, tt.v, got, tt.wantNull)
				}
				if !tt.wantNull && col.V[0] != tt.v {
					t.Errorf("%s row 0 = %d, want %d", gpumetric.All()[i].Column, col.V[0], tt.v)
				}
				if col.Null[1] != 0 {
					t.Errorf("%s row 1 (the other GPU) is NULL", gpumetric.All()[i].Column)
				}
				if c.nulled[i] != wantNulled {
					t.Errorf("%s: %d readings counted as nulled, want %d", gpumetric.All()[i].Column, c.nulled[i], wantNulled)
				}
			}
			if e := c.counters[gpumetric.Index(gpumetric.Energy)]; e.V[1] != 1234 {
				t.Errorf("energy of GPU 1 = %d, want 1234", e.V[1])
			}
		})
	}
}

// MaxClockAhead is the columns' bound: a message within it passes check, beyond it is rejected.
func TestCheckMaxClockAhead(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		limit  time.Duration
		ahead  time.Duration
		reject bool
	}{
		{name: "default, 10 min ahead", ahead: 10 * time.Minute},
		{name: "default, 2 h ahead", ahead: 2 * time.Hour, reject: true},
		{name: "5 min limit, 10 min ahead", limit: 5 * time.Minute, ahead: 10 * time.Minute, reject: true},
		{name: "5 min limit, 4 min ahead", limit: 5 * time.Minute, ahead: 4 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := now.Add(tt.ahead).UnixMilli()
			data, err := wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "a", Gpus: []*wirepb.GPU{{Index: 0}},
				TimeUnixMs: []int64{ms}, Gpu: []uint32{0}})
			if err != nil {
				t.Fatal(err)
			}
			var dec wire.SampleDecoder
			sb, err := dec.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			c := newSampleColumns()
			if tt.limit > 0 {
				c.ahead = tt.limit
			}
			ec := newEventColumns()
			ec.ahead = c.ahead
			eb := &wirepb.EventBatch{AgentId: "a", Events: []*wirepb.Event{{TimeUnixMs: ms}}}
			for what, err := range map[string]error{"samples": c.check(sb, now), "events": ec.check(eb, now)} {
				if (err != nil) != tt.reject {
					t.Errorf("%s check = %v, want rejected %v", what, err, tt.reject)
				}
			}
		})
	}
}

// A skewed agent is logged once per interval however many messages it sends; another agent is
// logged on its own.
func TestSkewLogOncePerAgentPerInterval(t *testing.T) {
	var l skewLog
	t0 := time.Unix(1_800_000_000, 0)
	steps := []struct {
		agent string
		at    time.Duration
		want  bool
	}{
		{"a", 0, true},
		{"a", time.Second, false},
		{"b", 2 * time.Second, true},
		{"a", 59 * time.Second, false},
		{"a", 61 * time.Second, true},
		{"b", 62 * time.Second, true},
		{"b", 63 * time.Second, false},
	}
	for _, s := range steps {
		if got := l.first(s.agent, t0.Add(s.at), time.Minute); got != s.want {
			t.Errorf("agent %s at +%s: log %v, want %v", s.agent, s.at, got, s.want)
		}
	}
}
