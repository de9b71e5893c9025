package ingest

import (
	"testing"

	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// TestEventKindNameHealth: every kind the wire defines is stored under a name of its own in
// gpu_events.kind, health state changes as "health" (the fleet's health reports select on it).
func TestEventKindNameHealth(t *testing.T) {
	if got := EventKindName(wirepb.EventKind_EVENT_KIND_HEALTH); got != "health" {
		t.Errorf("EVENT_KIND_HEALTH is stored as %q, want health", got)
	}
	seen := map[string]wirepb.EventKind{}
	for n := range wirepb.EventKind_name {
		k := wirepb.EventKind(n)
		name := EventKindName(k)
		if k != wirepb.EventKind_EVENT_KIND_UNSPECIFIED && name == "unknown" {
			t.Errorf("%s has no gpu_events.kind name", k)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("%s and %s are both stored as %q", prev, k, name)
		}
		seen[name] = k
	}
}
