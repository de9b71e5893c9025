package gpumetric

import (
	"regexp"
	"strings"
	"testing"
)

func TestRegistryIsDenseAndNamed(t *testing.T) {
	col := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]bool{}
	if len(All()) != Count {
		t.Errorf("%d metrics in the catalogue, Count is %d", len(All()), Count)
	}
	for i, m := range All() {
		if int(m.ID) != i+1 {
			t.Errorf("metric %q at position %d has id %d: ids must be dense from 1", m.Column, i, m.ID)
		}
		if Index(m.ID) != i {
			t.Errorf("Index(%d) = %d, want %d", m.ID, Index(m.ID), i)
		}
		if got, ok := Lookup(m.ID); !ok || got.Column != m.Column {
			t.Errorf("Lookup(%d) = %q, %v; want %q", m.ID, got.Column, ok, m.Column)
		}
		if !col.MatchString(m.Column) || seen[m.Column] {
			t.Errorf("column %q is not a unique lower_snake identifier", m.Column)
		}
		seen[m.Column] = true
		if m.Kind != Gauge && m.Kind != Counter && m.Kind != Bitmask {
			t.Errorf("metric %q has no kind", m.Column)
		}
	}
	for _, id := range []ID{0, ID(len(All()) + 1)} {
		if Index(id) != -1 {
			t.Errorf("Index(%d) = %d, want -1", id, Index(id))
		}
		if _, ok := Lookup(id); ok {
			t.Errorf("Lookup(%d) found a metric", id)
		}
	}
}

// Every gauge needs a plausible range, or ingest would null all its readings; a counter or a
// bitmask has none, since ingest checks only gauges against theirs.
func TestEveryGaugeHasARange(t *testing.T) {
	for i, m := range All() {
		lo, hi, ok := Plausible(i)
		if ok != (m.Kind == Gauge) {
			t.Errorf("%s: Plausible ok=%v for kind %s", m.Column, ok, m.Kind)
		}
		if ok && !(hi > lo) {
			t.Errorf("%s: no plausible range set (got [%v, %v])", m.Column, lo, hi)
		}
		if m.Kind != Gauge && m.Plausible != (Range{}) {
			t.Errorf("%s: a %s with a plausible range %v, which nothing checks", m.Column, m.Kind, m.Plausible)
		}
	}
}

// Every metric names one NVML source the agent can build a request from: a call, field values
// with nvml.h names, or a GPM metric with one.
func TestEveryMetricHasOneSource(t *testing.T) {
	for _, m := range All() {
		s := m.Source
		n := 0
		for _, set := range []bool{s.Call != "", len(s.Fields) > 0, s.GPM != 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: source %+v sets %d of call, fields and GPM, want exactly one", m.Column, s, n)
			continue
		}
		if s.Call == "" && s.Use != "" {
			t.Errorf("%s: Use %q without a call", m.Column, s.Use)
		}
		if len(s.Fields) == 0 && (len(s.Else) > 0 || s.AllLinks) {
			t.Errorf("%s: Else or AllLinks without fields", m.Column)
		}
		if s.Call != "" && !strings.HasPrefix(s.Call, "nvml") {
			t.Errorf("%s: call %q is not an NVML function", m.Column, s.Call)
		}
		for _, f := range append(append([]Field(nil), s.Fields...), s.Else...) {
			if _, ok := fieldNames[f]; !ok {
				t.Errorf("%s: field %d has no nvml.h name", m.Column, f)
			}
		}
		if s.GPM != 0 {
			if _, ok := gpmNames[s.GPM]; !ok {
				t.Errorf("%s: GPM metric %d has no nvml.h name", m.Column, s.GPM)
			}
		}
	}
}

func TestKinds(t *testing.T) {
	for _, c := range []struct {
		k       Kind
		name    string
		integer bool
		typ     string
	}{
		{Gauge, "gauge", false, "Nullable(Float32)"},
		{Counter, "counter", true, "Nullable(UInt64)"},
		{Bitmask, "bitmask", true, "Nullable(UInt64)"},
	} {
		if c.k.String() != c.name || c.k.Integer() != c.integer || c.k.ColumnType() != c.typ {
			t.Errorf("%s: String %q Integer %v ColumnType %q; want %q %v %q", c.name, c.k, c.k.Integer(), c.k.ColumnType(), c.name, c.integer, c.typ)
		}
	}
}

// The clock-event reasons are single distinct bits, in order, each named once: a query's share of
// one reason must read exactly one bit.
func TestClockEventReasons(t *testing.T) {
	var seen uint64
	names := map[string]bool{}
	for i, r := range ClockEventReasons {
		if r.Bit == 0 || r.Bit&(r.Bit-1) != 0 || r.Bit&seen != 0 || (i > 0 && r.Bit < ClockEventReasons[i-1].Bit) {
			t.Errorf("%s: bit %#x is not a new single bit in order", r.Name, r.Bit)
		}
		seen |= r.Bit
		if r.Name == "" || names[r.Name] {
			t.Errorf("name %q empty or repeated", r.Name)
		}
		names[r.Name] = true
		if got, ok := LookupClockEventReason(r.Name); !ok || got != r {
			t.Errorf("LookupClockEventReason(%q) = %v %v", r.Name, got, ok)
		}
	}
	if _, ok := LookupClockEventReason("sw_thermal "); ok {
		t.Error("a name with a trailing space was found")
	}
}
