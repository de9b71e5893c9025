// Package sim is a simulated GPU node: plausible, seeded, time-varying readings for demos, tests and
// load generation. Gauges depend only on (seed, node, GPU, instant), whatever order nodes are
// sampled in; counters (energy, ECC, PCIe replays) and throttle events also depend on which
// instants the node sampled before, as on a real GPU.
//
// GPUs fail at the rates of Meta's Llama 3 report times a scale (WithFailureScale), with the
// warning signs NVML shows before such failures (failure.go, docs/simulator.md), and on explicit
// injections (WithInjections). Which failures happen, and when, depends only on the seed, the GPU
// and the options, and what they do to gauges on the instant too, except that a node starts
// healthy: failures before its first sample did not happen.
package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// NVML clock-event reason bits the simulator raises (nvml.h ClocksEventReason*).
const (
	reasonSwThermal = 0x20
	reasonHwThermal = 0x40
)

// Node simulates one host with GPUsPerNode GPUs.
type Node struct {
	Cluster string
	Name    string
	idx     int
	seed    uint64
	gpus    []*wirepb.GPU
	state   []gpuState
	opt     options
	started bool
	from    int64 // the first sample's instant, Unix ms
	genNext int64 // the next epoch whose failures are drawn
	infer   bool  // the node serves inference (workload.go)
}

type gpuState struct {
	energyMJ    uint64
	nvlinkKiB   uint64
	sbe, sbeAgg uint64 // single-bit ECC errors: volatile (a reset zeroes it) and aggregate
	dbe, dbeAgg uint64
	remapUnc    uint64 // rows remapped after uncorrectable errors
	replays     uint64
	// Violation times in ns: each grows by the time since the last reading while its cause
	// holds at this one (thermal while throttled, power near the limit, low utilisation idle).
	violPowerNs, violThermalNs, violLowUtilNs uint64
	lastT                                     time.Time
	throttled                                 bool
	// fails are the GPU's failures whose precursor, failure or repair is still ahead, by time.
	fails []failure
}

// powerLimitW is each model's power limit in W, the board's maximum and the one it enforces (the
// simulated fleet runs at the default); a model not named runs at 700 W.
var powerLimitW = map[string]float64{
	"NVIDIA H100 80GB HBM3": 700,
	"NVIDIA A100-SXM4-80GB": 400,
	"NVIDIA H200":           700,
}

// unmodelled are the catalogue metrics the simulated boards do not answer, absent on every row:
// SXM boards have no fan, and Ampere and later remap rows rather than retire pages.
var unmodelled = map[gpumetric.ID]bool{
	gpumetric.FanSpeed: true, gpumetric.RetiredSBE: true, gpumetric.RetiredDBE: true, gpumetric.RetiredPending: true,
}

// NewNode returns simulated node number idx of a fleet; seed fixes every reading. Without options
// its GPUs fail at Meta's rates (scale 1) and are repaired after DefaultRepairTime.
func NewNode(seed uint64, cluster string, idx, gpus int, opts ...Option) *Node {
	n := &Node{Cluster: cluster, Name: nodeName(idx), idx: idx, seed: seed ^ uint64(idx)*0x9e3779b97f4a7c15,
		opt: options{scale: 1, repair: DefaultRepairTime}}
	for _, o := range opts {
		o(&n.opt)
	}
	_, pool := n.Placement()
	n.infer = pool == "infer"
	n.opt.inject = slices.DeleteFunc(slices.Clone(n.opt.inject), func(in Injection) bool { return in.Node != n.Name || in.GPU >= gpus })
	models := []string{"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA H200"}
	model := models[mix(n.seed, 1)%uint64(len(models))]
	for g := 0; g < gpus; g++ {
		n.gpus = append(n.gpus, &wirepb.GPU{
			Index:    uint32(g),
			Uuid:     fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", uint32(mix(n.seed, 2)), idx&0xffff, g, uint16(seed), mix(n.seed, uint64(g)+3)&0xffffffffffff),
			Model:    model,
			Serial:   fmt.Sprintf("%013d", mix(n.seed, uint64(g)+100)%1e13),
			PciBusId: fmt.Sprintf("%08X:%02X:00.0", g/8, 0x18+(g%8)*0x10),
			JobId:    fmt.Sprintf("job-%d", 1000+int(mix(n.seed, 7)%50)),
		})
		n.state = append(n.state, gpuState{energyMJ: mix(n.seed, uint64(g)+9) % 1e12})
	}
	return n
}

// GPUs returns the node's GPU identities.
func (n *Node) GPUs() []*wirepb.GPU { return n.gpus }

// Sample appends one reading of every GPU at t to b (whose gpus must be this node's) and appends
// the events the reading raised to ev.
func (n *Node) Sample(t time.Time, b *wirepb.SampleBatch, ev []*wirepb.Event) []*wirepb.Event {
	if len(b.Gpus) == 0 {
		b.Gpus = n.gpus
	}
	if len(b.Metrics) == 0 {
		for _, m := range gpumetric.All() {
			b.Metrics = append(b.Metrics, &wirepb.MetricColumn{Metric: uint32(m.ID)})
		}
	}
	ms := t.UnixMilli()
	n.advance(ms)
	for g := range n.gpus {
		st := &n.state[g]
		gseed := mix(n.seed, uint64(g))
		tick := uint64(ms / 100)
		noise := func(k uint64) float64 { return float64(mix(gseed^k, tick)%1000)/1000 - 0.5 }
		forward := st.lastT.IsZero() || t.After(st.lastT)
		if forward && len(st.fails) > 0 {
			ev = n.happen(g, st, ms, ev)
		}
		fx := effectsAt(st.fails, ms)

		w := n.workAt(g, ms, fx.idle)
		util := w.util
		// Temperature follows the load of the last minutes, not this second's; the sensor wavers
		// by under half a degree, so a steady GPU reads between two whole degrees.
		heat := n.heatLevel(g, ms)
		if fx.idle {
			heat = 0
		}
		// One GPU in eight sits in a hot spot of its chassis and, under full load, past the 84 °C
		// at which the driver holds its clocks down: the fleet's occasional thermal throttling.
		ambient := 30 + 1.2*float64(gseed%8)
		if gseed%8 == 7 {
			ambient += 1.5
		}
		die := ambient + 45*heat + thermalRiseC*fx.heat
		temp := die + 0.8*noise(2) // the sensor's reading
		// The driver throttles on the die's temperature, not on the sensor's wavering. A failing
		// thermal interface holds the clocks down ever more often as it heats.
		throttled := die > 84 || fx.heat >= 1 || (fx.heat > 0 && noise(16)+0.5 < 0.8*fx.heat)
		limit, ok := powerLimitW[n.gpus[g].Model]
		if !ok {
			limit = 700
		}
		// Board power: an idle floor, rising with load to near the limit, moving by a few per cent of
		// the limit from one second to the next under load; NVML answers in mW.
		idleW := 60 + float64(gseed%16)
		power := idleW + 0.3*noise(3)
		if util > 0 {
			power = min(idleW+(0.97*limit-idleW)*util/100+0.06*limit*noise(3), limit)
		}
		power = math.Round(power*1000) / 1000
		if fx.lost { // fell off the bus: no reading until the repair, as agent/nvml drops a lost GPU's rows
			if forward {
				st.lastT = t
			}
			if forward && len(st.fails) > 0 {
				st.prune(ms)
			}
			continue
		}
		if t.After(st.lastT) { // a clock stepping back neither adds energy nor rewinds the counter
			if !st.lastT.IsZero() {
				dt := t.Sub(st.lastT)
				st.energyMJ += uint64(power * float64(dt.Milliseconds()))
				// NVLink traffic follows utilisation: all-reduce-heavy training moves ~100 GB/s per
				// GPU at full load.
				st.nvlinkKiB += uint64(nvlinkRate(w) * (1 + 0.1*noise(8)) * dt.Seconds())
				if throttled {
					st.violThermalNs += uint64(dt.Nanoseconds())
				}
				if power >= 0.95*limit {
					st.violPowerNs += uint64(dt.Nanoseconds())
				}
				if util < 10 {
					st.violLowUtilNs += uint64(dt.Nanoseconds())
				}
			}
			st.lastT = t
		}
		if mix(gseed^4, tick)%5000 == 0 {
			st.sbe++
			st.sbeAgg++
		}
		if mix(gseed^5, tick)%200 == 0 {
			st.replays++
		}
		if forward && len(st.fails) > 0 {
			st.climb(ms)
			st.prune(ms)
		}
		var reasons uint64
		clockSM := float64(idleClockSM)
		if util > 0 {
			clockSM = busyClockSM
		}
		if throttled {
			reasons = reasonSwThermal
			clockSM = 1410
		}
		if fx.hwSlowdown {
			reasons |= reasonHwThermal
			clockSM = 1095
		}
		if throttled != st.throttled {
			ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: uint32(g), GpuUuid: n.gpus[g].Uuid,
				Kind: wirepb.EventKind_EVENT_KIND_THROTTLE, Code: reasons, Message: "clock-event reasons changed"})
			st.throttled = throttled
		}
		total, used := float64(fbTotalMiB), w.fbUsedMiB
		// PCIe: a training GPU reads its input in bursts; at rest the link is quiet. KB/s, as NVML.
		pcieRx, pcieTx := math.Round(8*(noise(10)+0.5)), math.Round(4*(noise(11)+0.5))
		if util > 0 {
			pcieRx = math.Round(util * (300 + 400*(noise(10)+0.5)))
			if mix(gseed^34, tick/10)%10 < 2 {
				pcieRx += math.Round(12000 + 12000*(noise(17)+0.5))
			}
			pcieTx = math.Round(util * (40 + 60*(noise(11)+0.5)))
		}

		b.TimeUnixMs = append(b.TimeUnixMs, ms)
		b.Gpu = append(b.Gpu, uint32(g))
		for _, c := range b.Metrics {
			switch gpumetric.ID(c.Metric) {
			case gpumetric.GPUUtil:
				c.Values = append(c.Values, util)
			case gpumetric.MemUtil:
				c.Values = append(c.Values, math.Round(util*0.55))
			case gpumetric.FBUsed:
				c.Values = append(c.Values, math.Round(used))
			case gpumetric.FBFree:
				c.Values = append(c.Values, math.Round(total-used))
			case gpumetric.FBTotal:
				c.Values = append(c.Values, total)
			case gpumetric.Power:
				c.Values = append(c.Values, power)
			case gpumetric.Energy:
				c.Counts = append(c.Counts, st.energyMJ)
			case gpumetric.TempGPU:
				c.Values = append(c.Values, math.Round(temp))
			case gpumetric.TempMem:
				c.Values = append(c.Values, math.Round(temp+4))
			case gpumetric.ClockSM:
				c.Values = append(c.Values, clockSM)
			case gpumetric.ClockMem:
				c.Values = append(c.Values, 2619)
			case gpumetric.ThrottleReasons:
				c.Counts = append(c.Counts, reasons)
			case gpumetric.PCIeTx:
				c.Values = append(c.Values, pcieTx)
			case gpumetric.PCIeRx:
				c.Values = append(c.Values, pcieRx)
			case gpumetric.PCIeReplays:
				c.Counts = append(c.Counts, st.replays)
			case gpumetric.ECCSingleVolatile:
				c.Counts = append(c.Counts, st.sbe)
			case gpumetric.ECCSingleAggregate:
				c.Counts = append(c.Counts, st.sbeAgg)
			case gpumetric.ECCDoubleVolatile:
				c.Counts = append(c.Counts, st.dbe)
			case gpumetric.ECCDoubleAggregate:
				c.Counts = append(c.Counts, st.dbeAgg)
			case gpumetric.RetiredPages: // Ampere and later remap rows: NVML answers the remapped rows
				c.Counts = append(c.Counts, st.remapUnc)
			case gpumetric.RemappedUnc:
				c.Counts = append(c.Counts, st.remapUnc)
			case gpumetric.FanSpeed:
				c.Values = append(c.Values, 0) // SXM boards have no fan: marked absent below
			case gpumetric.PState:
				c.Values = append(c.Values, 0)
			case gpumetric.EncUtil, gpumetric.DecUtil: // training nodes leave the video engines idle
				c.Values = append(c.Values, 0)
			case gpumetric.MIGMode: // whole GPUs, not partitioned
				c.Values = append(c.Values, 0)
			case gpumetric.SMActive: // SMs are busy a little less than "a kernel was running"
				c.Values = append(c.Values, gpmPercent(util, 0.92, noise(12)))
			case gpumetric.SMOccupancy:
				c.Values = append(c.Values, gpmPercent(util, 0.55, noise(13)))
			case gpumetric.TensorActive:
				c.Values = append(c.Values, gpmPercent(util, 0.6, noise(14)))
			case gpumetric.DRAMActive:
				c.Values = append(c.Values, gpmPercent(util, 0.6*0.9, noise(15)))
			case gpumetric.NVLinkTx:
				c.Counts = append(c.Counts, st.nvlinkKiB)
			case gpumetric.NVLinkRx:
				c.Counts = append(c.Counts, st.nvlinkKiB+st.nvlinkKiB/50)
			case gpumetric.RemappedCor, gpumetric.NVLinkCRCFlit, gpumetric.NVLinkReplay, gpumetric.NVLinkRecovery,
				gpumetric.NVLinkCRCData, gpumetric.ViolSyncBoost, gpumetric.ViolBoardLimit, gpumetric.ViolReliability:
				c.Counts = append(c.Counts, 0)
			case gpumetric.RemapPending:
				c.Values = append(c.Values, b2f(fx.remapPending))
			case gpumetric.RemapFailure:
				c.Values = append(c.Values, b2f(fx.remapFailure))
			case gpumetric.ViolPower:
				c.Counts = append(c.Counts, st.violPowerNs)
			case gpumetric.ViolThermal:
				c.Counts = append(c.Counts, st.violThermalNs)
			case gpumetric.ViolLowUtil:
				c.Counts = append(c.Counts, st.violLowUtilNs)
			case gpumetric.PowerLimit, gpumetric.PowerMax:
				c.Values = append(c.Values, limit)
			default: // a metric the simulator does not model: a placeholder, marked absent below
				if i := gpumetric.Index(gpumetric.ID(c.Metric)); i >= 0 && gpumetric.All()[i].Kind.Integer() {
					c.Counts = append(c.Counts, 0)
				} else {
					c.Values = append(c.Values, 0)
				}
			}
		}
	}
	rows := len(b.TimeUnixMs)
	for _, c := range b.Metrics {
		if id := gpumetric.ID(c.Metric); unmodelled[id] || id > gpumetric.NVLinkCRCData {
			c.Present = wire.SetPresent(rows, func(int) bool { return false })
		}
	}
	return ev
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// gpmPercent is a GPM activity at 0.1 %: a share of utilisation, near it, and 0 on an idle GPU.
func gpmPercent(util, share, noise float64) float64 {
	if util == 0 {
		return 0
	}
	return math.Round(clamp(util*share+noise, 0, 100)*10) / 10
}

// nvlinkRate is a GPU's NVLink traffic in KiB/s: all-reduce-heavy training moves ~100 GB/s per GPU
// at full load, inference a fifth of that.
func nvlinkRate(w work) float64 {
	if w.training {
		return w.util / 100 * 100e9 / 1024
	}
	return w.util / 100 * 20e9 / 1024
}

// mix is splitmix64 over (a, b): a cheap, stateless hash so readings depend only on their inputs.
func mix(a, b uint64) uint64 {
	z := a + b*0x9e3779b97f4a7c15 + 0x632be59bd9b4e5b
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Identity implements agent.Source.
func (n *Node) Identity() (cluster, node string) { return n.Cluster, n.Name }

// Placement puts eight simulated nodes in a rack and every fourth rack in the inference pool, so
// that a simulated fleet has racks and pools to group by.
func (n *Node) Placement() (rack, pool string) {
	r := n.idx / 8
	pool = "train"
	if r%4 == 3 {
		pool = "infer"
	}
	return fmt.Sprintf("rack-%03d", r), pool
}
