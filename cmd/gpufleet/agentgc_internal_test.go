package main

import (
	"runtime/debug"
	"testing"
)

func TestSetAgentGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	tests := []struct {
		gogc    string
		applied bool
		want    int // the percent in force after
	}{
		{"", true, agentGOGC},
		{"200", false, 100}, // left as the runtime set it
		{"off", false, 100},
	}
	for _, tt := range tests {
		debug.SetGCPercent(100)
		got := setAgentGC(func(k string) string {
			if k == "GOGC" {
				return tt.gogc
			}
			return ""
		})
		if now := debug.SetGCPercent(100); got != tt.applied || now != tt.want {
			t.Errorf("GOGC=%q: applied %v, percent %d; want %v, %d", tt.gogc, got, now, tt.applied, tt.want)
		}
	}
}
