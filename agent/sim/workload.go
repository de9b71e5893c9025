package sim

import "math"

// The workload model (docs/simulator.md, "What the GPUs do"): what a GPU is doing at an instant,
// as a function of (seed, node, GPU, instant) alone, so gauges stay independent of history.
//
// A training node runs one job after another on all its GPUs in lockstep (data parallel): each job
// starts after an idle gap, holds its memory for the whole job, keeps the GPUs at or next to 100 %,
// stops for a checkpoint every half hour to hour and stalls for a second now and then waiting
// for data. An inference node serves all the time at a load that drifts over tens of minutes. A few
// GPUs sit idle throughout: the ones a fleet operator wants to find.

const (
	minute = 60_000 // ms

	idleClockSM = 345  // MHz: an idle H100's SM clock
	busyClockSM = 1980 // MHz: pinned at the maximum under load (a throttled GPU: 1410, or 1095)
	fbIdleMiB   = 523  // MiB NVML reports used with no process: the driver's reservations
	fbTotalMiB  = 81559
)

// work is what a GPU is doing at an instant.
type work struct {
	util      float64 // % of the last sample period a kernel ran, at NVML's precision (integer)
	level     float64 // 0..1, the load without per-second noise: what heats the GPU
	fbUsedMiB float64
	training  bool // a training job runs (checkpoints and stalls included)
}

// job is where a training node's job schedule stands at ms: cycle numbers its jobs, busy says
// a job runs, since is the time since it started.
func (n *Node) job(ms int64) (cycle int64, busy bool, since int64) {
	cycleMs := int64(40+mix(n.seed, 20)%120) * minute // 40–159 min from one job's start to the next's
	t := ms + int64(mix(n.seed, 21)%uint64(cycleMs))
	cycle, pos := t/cycleMs, t%cycleMs
	gap := int64(2+mix(n.seed^uint64(cycle), 22)%14) * minute // 2–15 min idle between jobs
	return cycle, pos >= gap, pos - gap
}

// inference reports whether the node serves inference (its rack's pool, Placement; NewNode
// keeps the answer, as Placement formats strings).
func (n *Node) inference() bool { return n.infer }

// levelAt is the GPU's noise-free load at ms, 0..1.
func (n *Node) levelAt(g int, ms int64) float64 {
	if mix(n.seed, uint64(g))%17 == 0 {
		return 0
	}
	if n.inference() {
		period := float64(30+mix(n.seed, 24)%60) * minute // the load drifts over 30–89 minutes
		return 0.45 + 0.3*math.Sin(float64(ms)/period*2*math.Pi+float64(mix(n.seed, 25)%628)/100)
	}
	_, busy, since := n.job(ms)
	if !busy {
		return 0
	}
	every := int64(30+mix(n.seed, 23)%31) * minute // a checkpoint every 30–60 min
	length := int64(30+mix(n.seed, 26)%61) * 1000  // lasting 30–90 s
	if since >= every && since%every < length {
		return 0.03
	}
	return 1
}

// workAt is GPU g's work at ms. idle is a failure's: the GPU runs nothing.
func (n *Node) workAt(g int, ms int64, idle bool) work {
	if idle {
		return work{fbUsedMiB: fbIdleMiB}
	}
	level := n.levelAt(g, ms)
	sec := uint64(ms / 1000)
	w := work{level: level, fbUsedMiB: fbIdleMiB}
	switch {
	case level == 0:
	case n.inference():
		w.util = math.Round(clamp(100*level+6*(float64(mix(n.seed^uint64(g)^27, sec)%1000)/1000-0.5), 1, 100))
		w.fbUsedMiB = float64(30_000 + mix(n.seed, 28)%20_000) // the model's weights and KV cache
	default:
		cycle, _, _ := n.job(ms)
		w.training = true
		w.fbUsedMiB = float64(40_000 + mix(n.seed^uint64(cycle), 29)%38_000) // each job its own size
		switch r := mix(n.seed^30, sec) % 1000; {                            // node-wide: the GPUs wait for the same batch
		case level < 0.5: // a checkpoint: the GPUs wait for storage
			w.util = float64(mix(n.seed^uint64(g)^31, sec) % 4)
		case r < 15: // a data-loading stall
			w.util = float64(40 + mix(n.seed^uint64(g)^32, sec)%40)
		default: // NVML's one-second figure of a training GPU: 100, at times 99 or 98
			switch r := mix(n.seed^uint64(g)^33, sec) % 100; {
			case r < 88:
				w.util = 100
			case r < 96:
				w.util = 99
			default:
				w.util = 98
			}
		}
	}
	return w
}

// heatLevel is the load the GPU's temperature follows: its level over the last three minutes,
// recent seconds weighted most, so temperature lags power as a heat sink does.
func (n *Node) heatLevel(g int, ms int64) float64 {
	var sum float64
	for _, p := range [...]struct {
		ago int64
		w   float64
	}{{0, 0.3}, {20_000, 0.25}, {45_000, 0.2}, {90_000, 0.15}, {180_000, 0.1}} {
		sum += p.w * n.levelAt(g, ms-p.ago)
	}
	return sum
}
