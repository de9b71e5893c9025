// Package health derives each GPU's health state from what the agent reads: the Xid events (by
// the bucket NVIDIA's catalog gives them, internal/xid), uncorrectable ECC, row-remap and
// page-retirement state, a GPU fallen off the bus, NVLink error rates and sustained thermal or
// power violation. Rules is the one table of rules (docs/health.md is generated from it); an
// Evaluator applies it to a node's sample batches tick after tick, remembering per GPU what the
// rules need (the Xid-derived conditions, the counters at the start of a rate window), and reports
// every change of a GPU's state. The agent sends those as EVENT_KIND_HEALTH events; `gpufleet
// health-check` applies the same rules to one or two reads for Slurm and Kubernetes.
package health

import (
	"fmt"
	"strconv"
)

// State is a GPU's health, ordered by severity: a GPU is in the most severe state any of its
// active conditions asks for. The numbers are stored in gpu_events.code of kind "health" and read
// by the fleet's reports: never renumber them.
type State uint8

const (
	// Healthy: no rule fires.
	Healthy State = 0
	// Degraded: works, but something is wrong enough to watch (NVLink errors, throttling, an Xid
	// the catalog does not know).
	Degraded State = 1
	// RestartApp: the application on the GPU must restart; the GPU needs nothing.
	RestartApp State = 2
	// ResetGPU: drain the GPU and reset it (nvidia-smi -r) or reload the driver.
	ResetGPU State = 3
	// RebootNode: drain the node and reboot it.
	RebootNode State = 4
	// Service: the GPU needs service or replacement (RMA), or its board checked.
	Service State = 5
)

var stateNames = [...]string{"healthy", "degraded", "restart_app", "reset_gpu", "reboot_node", "service"}

// States lists every state, least severe first.
var States = []State{Healthy, Degraded, RestartApp, ResetGPU, RebootNode, Service}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ParseState is the inverse of String; it also takes the number ("3").
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if s == n {
			return State(i), nil
		}
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && int(n) < len(stateNames) {
		return State(n), nil
	}
	return 0, fmt.Errorf("health state %q: want one of healthy, degraded, restart_app, reset_gpu, reboot_node, service", s)
}

// Critical reports whether the state needs action now: anything from restart_app up.
// `gpufleet health-check` exits 2 for these, 1 for degraded.
func (s State) Critical() bool { return s >= RestartApp }
