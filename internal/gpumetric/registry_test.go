package gpumetric

import (
	"regexp"
	"testing"
)

func TestRegistryIsDenseAndNamed(t *testing.T) {
	col := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]bool{}
	for i, m := range All() {
		if int(m.ID) != i+1 {
			t.Errorf("metric %q at position %d has id %d: ids must be dense from 1", m.Column, i, m.ID)
		}
		if Index(m.ID) != i {
			t.Errorf("Index(%d) = %d, want %d", m.ID, Index(m.ID), i)
		}
		if !col.MatchString(m.Column) || seen[m.Column] {
			t.Errorf("column %q is not a unique lower_snake identifier", m.Column)
		}
		seen[m.Column] = true
		if m.Kind != Gauge && m.Kind != Counter {
			t.Errorf("metric %q has no kind", m.Column)
		}
	}
	for _, id := range []ID{0, ID(len(All()) + 1)} {
		if Index(id) != -1 {
			t.Errorf("Index(%d) = %d, want -1", id, Index(id))
		}
	}
}

// Every gauge needs a plausible range, or ingest would null all its readings.
func TestEveryGaugeHasARange(t *testing.T) {
	for i, m := range All() {
		lo, hi, ok := Plausible(i)
		if ok != (m.Kind == Gauge) {
			t.Errorf("%s: Plausible ok=%v for kind %d", m.Column, ok, m.Kind)
		}
		if ok && !(hi > lo) {
			t.Errorf("%s: no plausible range set (got [%v, %v])", m.Column, lo, hi)
		}
	}
}
