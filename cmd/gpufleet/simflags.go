package main

// The flags of a simulated fleet (simulate, demo, agent --source sim) and the agent.Config
// settings every streaming command shares.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/dcgmcompat"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// simFlags describe a simulated fleet.
type simFlags struct {
	cluster     string
	rack, pool  string
	gpus        int
	gpusPerNode int
	seed        uint64
	interval    time.Duration
	sendEvery   int
	speed       int // simulate's --speed; 0 where not registered (the wall clock)
	nodeOffset  int
	spoolDir    string
	spoolMiB    int
	state       agentState // the agent's alone (registerState)
	dcgmCompat  bool       // agent and simulate (registerDCGMCompat)
	// The failure model (agent/sim, docs/simulator.md).
	failureScale float64
	repairTime   time.Duration
	inject       injectFlag
}

// injectFlag is --inject: repeatable, and each value may hold several injections separated by ';'
// (an environment variable or config key holds one value).
type injectFlag []sim.Injection

func (f *injectFlag) String() string {
	var parts []string
	for _, in := range *f {
		parts = append(parts, in.String())
	}
	return strings.Join(parts, ";")
}

func (f *injectFlag) Set(s string) error {
	in, err := sim.ParseInjections(s)
	if err != nil {
		return err
	}
	*f = append(*f, in...)
	return nil
}

func (s *simFlags) register(f *flags, gpus int) {
	def := agent.DefaultConfig()
	f.StringVar(&s.cluster, "cluster", "sim", "cluster label of the samples (the simulator's default is sim; --source nvml uses \"default\" unless set)")
	f.StringVar(&s.rack, "rack", "", "rack label of every sample and event; empty leaves it to the source (the simulator puts\n"+
		"8 nodes in a rack; NVML knows none)")
	f.StringVar(&s.pool, "pool", "", "pool label (node pool, Slurm partition) of every sample and event; empty leaves it to the\n"+
		"source (the simulator puts every fourth rack in pool infer, the rest in train)")
	f.IntVar(&s.gpus, "gpus", gpus, "simulated GPUs in all")
	f.IntVar(&s.gpusPerNode, "gpus-per-node", 8, "GPUs per simulated node")
	f.Uint64Var(&s.seed, "seed", 1, "seed of the simulated readings: the same seed gives the same fleet")
	f.DurationVar(&s.interval, "interval", def.Interval, "sample interval")
	f.IntVar(&s.sendEvery, "send-every", def.SendEvery, "samples per Kafka message: the send interval is this times --interval\n"+
		"(at --interval 100ms, 10 keeps one request per node per second)")
	f.StringVar(&s.spoolDir, "spool-dir", "", "directory of the on-disk spool: batches wait there while Kafka is unreachable and\n"+
		"survive a restart. agent: default <--state-dir>/spool; simulate: none unless given (batches wait in memory,\n"+
		"one interval at a time)")
	f.IntVar(&s.spoolMiB, "spool-mib", 1024, "size cap of the spool; past it the oldest batches are dropped and counted")
	f.IntVar(&s.nodeOffset, "node-offset", 0, "number of the first simulated node, to run several simulators side by side")
	scale := 1.0
	if f.name == "demo" {
		scale = sim.DemoFailureScale
	}
	f.Float64Var(&s.failureScale, "failure-scale", scale, "simulated GPUs fail at the rates of Meta's Llama 3 report (16,384 H100s, 54 days) times this:\n"+
		"1 is that fleet (64 GPUs see a failure every ~6 weeks), 0 turns them off; the demo's 1e5 gives 64 GPUs one every ~40 s\n"+
		"(docs/simulator.md)")
	f.DurationVar(&s.repairTime, "repair-time", sim.DefaultRepairTime, "how long a failed simulated GPU stays failed before it is repaired (reset: counters back to 0,\n"+
		"flags cleared, a GPU off the bus reporting again)")
	f.Var(&s.inject, "inject", "inject a failure into the simulated fleet (repeatable; several separated by ';'):\n"+
		sim.InjectSyntax+";\n"+
		"after counts from the node's first sample, e.g. node=node-00003,gpu=2,fault=dbe,after=30s")
}

// registerSpeed adds --speed, for simulate's load tests.
func (s *simFlags) registerSpeed(f *flags) {
	f.IntVar(&s.speed, "speed", 1, "run the simulated clock this many times faster than real time (1..1000, needs --for): each node\n"+
		"samples every --interval / speed, stamped as if at --interval, ending about now; the fleet's load on\n"+
		"Kafka and ingest is that of speed × --gpus GPUs at --interval (docs/capacity.md, load test)")
}

// registerDCGMCompat adds --dcgm-compat, for the commands that serve an agent's /metrics.
func (s *simFlags) registerDCGMCompat(f *flags) {
	f.BoolVar(&s.dcgmCompat, "dcgm-compat", false, "also serve the latest GPU readings on /metrics under dcgm-exporter's metric names and labels\n"+
		"(DCGM_FI_DEV_GPU_UTIL{gpu,UUID,modelName,Hostname,...}), so dashboards and alerts written for dcgm-exporter\n"+
		"keep working during a migration; see docs/dcgm-compat.md")
}

// observer is agent.Config.Observe for --dcgm-compat: a dcgmcompat.Collector registered on reg,
// fed every sample. nil without the flag.
func (s *simFlags) observer(reg prometheus.Registerer) func(*wirepb.SampleBatch, int, []*wirepb.Event) {
	if !s.dcgmCompat {
		return nil
	}
	c := dcgmcompat.New()
	reg.MustRegister(c)
	return c.Observe
}

// agentConfig is the agent.Config the flags set; Sources, Sender, Spool and the rest are the
// caller's.
func (s *simFlags) agentConfig() agent.Config {
	cfg := agent.DefaultConfig()
	cfg.Interval, cfg.SendEvery, cfg.Rack, cfg.Pool = s.interval, s.sendEvery, s.rack, s.pool
	if s.speed != 0 {
		cfg.Speed = s.speed
	}
	// Every GPU's health state on gpu.events (docs/health.md), the simulator's as a real node's.
	cfg.Health = &health.Config{}
	return cfg
}

// validate checks the agent.Config settings, where agent.Config.Validate says, before anything is
// opened.
func (s *simFlags) validate(f *flags) error {
	return agentFields.explain(f, s.agentConfig().Validate())
}

// spoolAndBrokers opens the spool, then reaches Kafka (or, with a spool, only checks --brokers).
func (s *simFlags) spoolAndBrokers(ctx context.Context, log *slog.Logger, k *kafkaFlags) (*spool.Spool, []string, error) {
	sp, err := s.openSpool(log)
	if err != nil {
		return nil, nil, err
	}
	brokers, err := k.connectOrSpool(ctx, log, sp)
	if err != nil {
		if sp != nil {
			sp.Close()
		}
		return nil, nil, err
	}
	return sp, brokers, nil
}

// sources builds the simulated nodes, after checking the fleet's shape and the agent settings.
func (s *simFlags) sources(f *flags) ([]agent.Source, error) {
	switch {
	case s.gpus < 1:
		return nil, usageError{fmt.Errorf("--gpus %d: must be at least 1", s.gpus)}
	case s.gpusPerNode < 1 || s.gpusPerNode > 64:
		return nil, usageError{fmt.Errorf("--gpus-per-node %d: must be 1..64", s.gpusPerNode)}
	case !(s.failureScale >= 0 && s.failureScale <= sim.MaxFailureScale):
		return nil, usageError{fmt.Errorf("--failure-scale %g: must be 0..%g", s.failureScale, sim.MaxFailureScale)}
	case s.repairTime <= 0:
		return nil, usageError{fmt.Errorf("--repair-time %s: must be positive", s.repairTime)}
	}
	if err := s.validate(f); err != nil {
		return nil, err
	}
	opts := []sim.Option{sim.WithFailureScale(s.failureScale), sim.WithRepairTime(s.repairTime), sim.WithInjections(s.inject...)}
	var out []agent.Source
	gpusOf := map[string]int{}
	for left, i := s.gpus, 0; left > 0; i++ {
		n := min(left, s.gpusPerNode)
		nd := sim.NewNode(s.seed, s.cluster, s.nodeOffset+i, n, opts...)
		gpusOf[nd.Name] = n
		out = append(out, nd)
		left -= n
	}
	// A node takes the injections that name it; one naming no node of this fleet is a mistake.
	for _, in := range s.inject {
		n, ok := gpusOf[in.Node]
		switch {
		case !ok:
			_, first := out[0].Identity()
			_, last := out[len(out)-1].Identity()
			return nil, usageError{fmt.Errorf("--inject %s: field node: no simulated node %s (this fleet is %s … %s)", in, in.Node, first, last)}
		case in.GPU >= n:
			return nil, usageError{fmt.Errorf("--inject %s: field gpu: %s has GPUs 0..%d", in, in.Node, n-1)}
		}
	}
	return out, nil
}
