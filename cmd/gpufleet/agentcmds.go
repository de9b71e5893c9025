package main

// The commands that run on GPU nodes (agent, simulate) and the flags they share; they link no
// ClickHouse code, so that the agent-only build (-tags agentonly) stays small.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/attribution"
	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/kafka"
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
	nodeOffset  int
	spoolDir    string
	spoolMiB    int
	state       agentState // the agent's alone (registerState)
}

func (s *simFlags) register(f *flags, gpus int) {
	f.StringVar(&s.cluster, "cluster", "sim", "cluster label of the samples (the simulator's default is sim; --source nvml uses \"default\" unless set)")
	f.StringVar(&s.rack, "rack", "", "rack label of every sample and event; empty leaves it to the source (the simulator puts\n"+
		"8 nodes in a rack; NVML knows none)")
	f.StringVar(&s.pool, "pool", "", "pool label (node pool, Slurm partition) of every sample and event; empty leaves it to the\n"+
		"source (the simulator puts every fourth rack in pool infer, the rest in train)")
	f.IntVar(&s.gpus, "gpus", gpus, "simulated GPUs in all")
	f.IntVar(&s.gpusPerNode, "gpus-per-node", 8, "GPUs per simulated node")
	f.Uint64Var(&s.seed, "seed", 1, "seed of the simulated readings: the same seed gives the same fleet")
	f.DurationVar(&s.interval, "interval", time.Second, "sample interval")
	f.IntVar(&s.sendEvery, "send-every", 1, "samples per Kafka message: the send interval is this times --interval\n"+
		"(at --interval 100ms, 10 keeps one request per node per second)")
	f.StringVar(&s.spoolDir, "spool-dir", "", "directory of the on-disk spool: batches wait there while Kafka is unreachable and\n"+
		"survive a restart. agent: default <--state-dir>/spool; simulate: none unless given (batches wait in memory,\n"+
		"one interval at a time)")
	f.IntVar(&s.spoolMiB, "spool-mib", 1024, "size cap of the spool; past it the oldest batches are dropped and counted")
	f.IntVar(&s.nodeOffset, "node-offset", 0, "number of the first simulated node, to run several simulators side by side")
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

func (s *simFlags) sources() ([]agent.Source, error) {
	switch {
	case s.gpus < 1:
		return nil, usageError{fmt.Errorf("--gpus %d: must be at least 1", s.gpus)}
	case s.gpusPerNode < 1 || s.gpusPerNode > 64:
		return nil, usageError{fmt.Errorf("--gpus-per-node %d: must be 1..64", s.gpusPerNode)}
	case s.interval < 10*time.Millisecond:
		return nil, usageError{fmt.Errorf("--interval %s: must be at least 10ms", s.interval)}
	case s.sendEvery < 1 || s.sendEvery > 600:
		return nil, usageError{fmt.Errorf("--send-every %d: must be 1..600", s.sendEvery)}
	}
	var out []agent.Source
	for left, i := s.gpus, 0; left > 0; i++ {
		n := min(left, s.gpusPerNode)
		out = append(out, sim.NewNode(s.seed, s.cluster, s.nodeOffset+i, n))
		left -= n
	}
	return out, nil
}

func runAgent(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "agent", "Samples this node's GPUs every --interval and streams them to Kafka (gpu.samples,\n"+
		"key = node) with GPU events (XID, ECC, throttle, fell off the bus) on gpu.events. Every batch\n"+
		"goes through an on-disk spool in --state-dir first, so a Kafka outage or a restart loses nothing;\n"+
		"SIGTERM spools the cycle in flight and exits, leaving what Kafka has not taken to the next run.\n"+
		"Sources: nvml reads this host's NVIDIA GPUs through libnvidia-ml.so.1 (labels: --cluster, --node);\n"+
		"sim streams simulated GPUs (--gpus, --gpus-per-node, --seed) and needs no GPU.")
	var k kafkaFlags
	var s simFlags
	var source, node, metricsAddr, jobDir, podSocket, procRoot string
	var slurmCgroups bool
	var forDur time.Duration
	k.register(f)
	s.register(f, 8)
	s.registerState(f)
	f.StringVar(&source, "source", "nvml", "GPU source: nvml (this host's GPUs) or sim (simulated GPUs, for tests; `gpufleet simulate`\n"+
		"streams a fake fleet)")
	f.StringVar(&jobDir, "job-mapping-dir", "", "directory of per-GPU job files (dcgm-exporter's --hpc-job-mapping-dir convention,\n"+
		"written by Slurm prolog/epilog): a file per busy GPU index holding its job id")
	f.BoolVar(&slurmCgroups, "slurm-cgroups", false, "attribute each GPU to the Slurm jobs of the processes NVML sees on it, read from\n"+
		"their cgroups (job_<id> in /proc/<pid>/cgroup; no prolog scripts needed); --job-mapping-dir wins when both are set")
	f.StringVar(&procRoot, "proc-root", attribution.DefaultProcRoot, "the host's /proc, for --slurm-cgroups (a containerised agent mounts it, e.g. /host/proc)")
	f.StringVar(&podSocket, "pod-resources-socket", attribution.DefaultPodResourcesSocket, "the kubelet's pod-resources socket: when it exists (a Kubernetes node) and\n"+
		"--job-mapping-dir is not set, each GPU's job is the namespace/pod it is allocated to; empty disables")
	f.StringVar(&node, "node", "", "with --source nvml: this host's node label and Kafka key (default: the hostname)")
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:9400", "address for Prometheus /metrics: loopback only by default; :9400 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	f.DurationVar(&forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
	if err := f.parse(args); err != nil {
		return err
	}
	// A mistyped flag is a usage error even on a host without NVML, and is said before any
	// directory is made.
	if _, err := kafka.ParseBrokers(k.brokers); err != nil {
		return usageError{fmt.Errorf("--brokers: %w", err)}
	}
	if err := s.checkSpool(); err != nil {
		return err
	}
	switch source {
	case "sim":
		return streamFleet(ctx, f, &k, &s, metricsAddr, forDur)
	case "nvml":
	default:
		return usageError{fmt.Errorf("--source %q: use nvml or sim", source)}
	}

	log, err := f.logger()
	if err != nil {
		return err
	}
	// --cluster is shared with the simulator, whose default ("sim") would mislabel real GPUs:
	// unless it was given, the NVML source uses its own default.
	cluster := s.cluster
	clusterSet := e.getenv(envName("cluster")) != ""
	f.Visit(func(fl *flag.Flag) { clusterSet = clusterSet || fl.Name == "cluster" })
	if !clusterSet {
		cluster = ""
	}
	// NVML before Kafka: on a host without the driver, say that rather than a broker problem.
	lib, closeNVML, err := agentnvml.Open()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return fmt.Errorf("--source nvml: %w; or use --source sim", err)
	case errors.Is(err, agentnvml.ErrLibraryNotFound):
		return fmt.Errorf("--source nvml: NVML (libnvidia-ml.so.1) was not found: install the NVIDIA driver on this host, or use --source sim to run without GPUs")
	case err != nil:
		return fmt.Errorf("--source nvml: initialise NVML: %w (use --source sim to run without GPUs)", err)
	}
	defer func() {
		if err := closeNVML(); err != nil {
			log.Warn("NVML shutdown", slog.Any("err", err))
		}
	}()
	reg := newRegistry()
	src, err := agentnvml.New(lib, agentnvml.Options{Cluster: cluster, Node: node, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer src.Close()
	if len(src.GPUs()) == 0 {
		log.Warn("NVML sees no GPUs; sending empty batches as a heartbeat")
	}
	sp, brokers, err := s.spoolAndBrokers(ctx, log, &k)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	if err := serveHTTP(ctx, metricsAddr, reg, log, nil); err != nil {
		return err
	}
	prod := agent.NewProducerConn(brokers, k.conn)
	defer prod.Close()
	cfg := agent.Config{Sources: []agent.Source{src}, Sender: prod, Interval: s.interval, SendEvery: s.sendEvery, Logger: log, Registerer: reg, Spool: sp,
		Rack: s.rack, Pool: s.pool}
	switch {
	case jobDir != "":
		cfg.Jobs = attribution.MappingDir{Dir: jobDir}.Assign
		log.Info("job attribution from Slurm mapping files", slog.String("dir", jobDir))
	case slurmCgroups:
		cfg.Jobs = attribution.ProcCgroups{Root: procRoot, Processes: src.Processes,
			ReadError: func(pid uint32, err error) {
				log.Debug("cannot read a GPU process's cgroup", slog.Uint64("pid", uint64(pid)), slog.Any("err", err))
			},
		}.Assign
		log.Info("job attribution from the cgroups of the GPUs' processes", slog.String("proc", procRoot))
	case podSocket != "":
		if _, err := os.Stat(podSocket); err != nil {
			log.Info("no kubelet pod-resources socket: jobs are not attributed", slog.String("socket", podSocket))
			break
		}
		cfg.Jobs = attribution.NewPodResources(podSocket).Assign
		log.Info("job attribution from the kubelet's pod resources", slog.String("socket", podSocket))
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := withDeadline(ctx, forDur)
	defer cancel()
	c, n := src.Identity()
	log.Info("streaming", slog.String("cluster", c), slog.String("node", n), slog.Int("gpus", len(src.GPUs())), slog.Duration("interval", s.interval))
	err = a.Run(runCtx)
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return k.explain(err)
}

func runNVMLProbe(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "nvml-probe", "Reads this node's GPUs through NVML every --interval for --for, exactly as the agent does,\n"+
		"and reports each GPU's identity (MIG instances included), the metrics each answered, the\n"+
		"latency of every NVML call (p50/p99/max) and of a whole tick. Nothing is sent anywhere:\n"+
		"run it on a new GPU model or driver before rolling the agent out.")
	var interval, forDur time.Duration
	var asJSON bool
	f.DurationVar(&interval, "interval", time.Second, "sampling interval")
	f.DurationVar(&forDur, "for", time.Minute, "how long to sample")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := f.parse(args); err != nil {
		return err
	}
	if interval < 10*time.Millisecond {
		return usageError{fmt.Errorf("--interval %s: must be at least 10ms", interval)}
	}
	if forDur <= 0 {
		return usageError{fmt.Errorf("--for %s: must be positive", forDur)}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	lib, closeNVML, err := agentnvml.Open()
	switch {
	case errors.Is(err, agentnvml.ErrLibraryNotFound):
		return fmt.Errorf("NVML (libnvidia-ml.so.1) was not found: install the NVIDIA driver on this host")
	case err != nil:
		return fmt.Errorf("initialise NVML: %w", err)
	}
	defer func() {
		if err := closeNVML(); err != nil {
			log.Warn("NVML shutdown", slog.Any("err", err))
		}
	}()
	log.Info("probing", slog.Duration("for", forDur), slog.Duration("interval", interval))
	rep, err := agentnvml.Probe(ctx, lib, interval, forDur, log)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(e.stdout)
}

func runSimulate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "simulate", "Streams a simulated fleet (seeded, time-varying utilisation, temperature, power, clocks,\n"+
		"ECC counters, occasional XIDs and thermal throttling) to Kafka, as that many agents would.")
	var k kafkaFlags
	var s simFlags
	var metricsAddr string
	var forDur time.Duration
	k.register(f)
	s.register(f, 64)
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:9402", "address for Prometheus /metrics: loopback only by default; :9402 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	f.DurationVar(&forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
	if err := f.parse(args); err != nil {
		return err
	}
	return streamFleet(ctx, f, &k, &s, metricsAddr, forDur)
}

func streamFleet(ctx context.Context, f *flags, k *kafkaFlags, s *simFlags, metricsAddr string, forDur time.Duration) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	srcs, err := s.sources()
	if err != nil {
		return err
	}
	sp, brokers, err := s.spoolAndBrokers(ctx, log, k)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	reg := newRegistry()
	if err := serveHTTP(ctx, metricsAddr, reg, log, nil); err != nil {
		return err
	}
	prod := agent.NewProducerConn(brokers, k.conn)
	defer prod.Close()
	a, err := agent.New(agent.Config{Sources: srcs, Sender: prod, Interval: s.interval, SendEvery: s.sendEvery, Logger: log, Registerer: reg, Spool: sp,
		Rack: s.rack, Pool: s.pool})
	if err != nil {
		return err
	}
	runCtx, cancel := withDeadline(ctx, forDur)
	defer cancel()
	log.Info("streaming", slog.Int("nodes", len(srcs)), slog.Int("gpus", s.gpus), slog.Duration("interval", s.interval))
	err = a.Run(runCtx)
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return k.explain(err)
}
