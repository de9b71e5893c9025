package main

// `gpufleet agent`, the command that runs on GPU nodes. Like simulate and nvml-probe it links no
// ClickHouse code, so that the agent-only build (-tags agentonly) stays small.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/attribution"
	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/internal/kafka"
)

// agentCmd is `gpufleet agent`'s flags.
type agentCmd struct {
	k            kafkaFlags
	s            simFlags
	jobs         jobFlags
	source, node string
	metricsAddr  string
	forDur       time.Duration
	clusterSet   bool // --cluster (or its variable) given: the NVML source then takes it
}

func runAgent(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "agent", "Samples this node's GPUs every --interval and streams them to Kafka (gpu.samples,\n"+
		"key = node) with GPU events (XID, ECC, throttle, fell off the bus) on gpu.events. Every batch\n"+
		"goes through an on-disk spool in --state-dir first, so a Kafka outage or a restart loses nothing;\n"+
		"SIGTERM spools the cycle in flight and exits, leaving what Kafka has not taken to the next run.\n"+
		"Sources: nvml reads this host's NVIDIA GPUs through libnvidia-ml.so.1 (labels: --cluster, --node);\n"+
		"sim streams simulated GPUs (--gpus, --gpus-per-node, --seed) and needs no GPU.")
	var c agentCmd
	c.register(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := c.validate(f); err != nil {
		return err
	}
	setAgentGC(os.Getenv)
	if c.source == "sim" {
		return streamFleet(ctx, f, &c.k, &c.s, c.metricsAddr, c.forDur)
	}
	return c.runNVML(ctx, f)
}

func (c *agentCmd) register(f *flags) {
	c.k.register(f)
	c.s.register(f, 8)
	c.s.registerState(f)
	c.s.registerDCGMCompat(f)
	c.jobs.register(f)
	f.StringVar(&c.source, "source", "nvml", "GPU source: nvml (this host's GPUs) or sim (simulated GPUs, for tests; `gpufleet simulate`\n"+
		"streams a fake fleet)")
	f.StringVar(&c.node, "node", "", "with --source nvml: this host's node label and Kafka key (default: the hostname)")
	f.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9410", "address for Prometheus /metrics: loopback only by default; :9410 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	f.DurationVar(&c.forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
}

// validate refuses a mistyped flag as a usage error even on a host without NVML, and before any
// directory is made.
func (c *agentCmd) validate(f *flags) error {
	if _, err := kafka.ParseBrokers(c.k.brokers); err != nil {
		return usageError{fmt.Errorf("--brokers: %w", err)}
	}
	if err := c.s.checkSpool(); err != nil {
		return err
	}
	if c.source != "nvml" && c.source != "sim" {
		return usageError{fmt.Errorf("--source %q: use nvml or sim", c.source)}
	}
	if _, err := c.jobs.resources(); err != nil {
		return err
	}
	// --cluster is shared with the simulator, whose default ("sim") would mislabel real GPUs:
	// unless it was given, the NVML source uses its own default.
	c.clusterSet = f.isGiven("cluster")
	return c.s.validate(f)
}

// runNVML streams this host's GPUs.
func (c *agentCmd) runNVML(ctx context.Context, f *flags) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	// NVML before Kafka: on a host without the driver, say that rather than a broker problem.
	lib, closeNVML, err := openNVML()
	if err != nil {
		return err
	}
	defer func() {
		if err := closeNVML(); err != nil {
			log.Warn("NVML shutdown", slog.Any("err", err))
		}
	}()
	cluster := ""
	if c.clusterSet {
		cluster = c.s.cluster
	}
	reg := newRegistry()
	src, err := agentnvml.New(lib, agentnvml.Options{Cluster: cluster, Node: c.node, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer src.Close()
	if len(src.GPUs()) == 0 {
		log.Warn("NVML sees no GPUs; sending empty batches as a heartbeat")
	}
	sp, brokers, err := c.s.spoolAndBrokers(ctx, log, &c.k)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	if err := serveHTTP(ctx, c.metricsAddr, reg, log, nil); err != nil {
		return err
	}
	prod := kafka.NewProducerConn(brokers, c.k.conn)
	defer prod.Close()
	cfg := c.s.agentConfig()
	cfg.Sources, cfg.Sender, cfg.Logger, cfg.Registerer, cfg.Spool = []agent.Source{src}, prod, log, reg, sp
	cfg.Jobs = c.jobs.assigner(log, src.Processes)
	cfg.Observe = c.s.observer(reg)
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	// Past start-up NVML is open and Kafka answered, or batches wait in the spool for it.
	markReady()
	runCtx, cancel := withDeadline(ctx, c.forDur)
	defer cancel()
	cl, n := src.Identity()
	log.Info("streaming", slog.String("cluster", cl), slog.String("node", n), slog.Int("gpus", len(src.GPUs())), slog.Duration("interval", c.s.interval))
	err = a.Run(runCtx)
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return c.k.explain(err)
}

// openNVML loads the driver's library, saying what to do when it is missing.
func openNVML() (agentnvml.Lib, func() error, error) {
	lib, closeNVML, err := agentnvml.Open()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return nil, nil, fmt.Errorf("--source nvml: %w; or use --source sim", err)
	case errors.Is(err, agentnvml.ErrLibraryNotFound):
		return nil, nil, fmt.Errorf("--source nvml: NVML (libnvidia-ml.so.1) was not found: install the NVIDIA driver on this host, or use --source sim to run without GPUs")
	case err != nil:
		return nil, nil, fmt.Errorf("--source nvml: initialise NVML: %w (use --source sim to run without GPUs)", err)
	}
	return lib, closeNVML, nil
}

// jobFlags choose how the agent names the job on each GPU.
type jobFlags struct {
	mappingDir   string
	slurmCgroups bool
	procRoot     string
	podSocket    string
	podGPUs      string
}

func (j *jobFlags) register(f *flags) {
	f.StringVar(&j.mappingDir, "job-mapping-dir", "", "directory of per-GPU job files (dcgm-exporter's --hpc-job-mapping-dir convention,\n"+
		"written by Slurm prolog/epilog): a file per busy GPU index holding its job id")
	f.BoolVar(&j.slurmCgroups, "slurm-cgroups", false, "attribute each GPU to the Slurm jobs of the processes NVML sees on it, read from\n"+
		"their cgroups (job_<id> in /proc/<pid>/cgroup; no prolog scripts needed); --job-mapping-dir wins when both are set")
	f.StringVar(&j.procRoot, "proc-root", attribution.DefaultProcRoot, "the host's /proc, for --slurm-cgroups (a containerised agent mounts it, e.g. /host/proc)")
	f.StringVar(&j.podSocket, "pod-resources-socket", attribution.DefaultPodResourcesSocket, "the kubelet's pod-resources socket: when it exists (a Kubernetes node) and\n"+
		"--job-mapping-dir is not set, each GPU's job is the namespace/pod it is allocated to; empty disables")
	f.StringVar(&j.podGPUs, "pod-gpu-resources", strings.Join(attribution.DefaultGPUResources, ","), "the extended resources pods hold GPUs as, comma-separated, a trailing * a prefix: whole GPUs,\n"+
		"time-sliced replicas and, under the device plugin's mixed MIG strategy, nvidia.com/mig-<profile> (attributed to\n"+
		"the MIG instance's row)")
}

// resources is --pod-gpu-resources as a list, or a usage error naming the flag.
func (j *jobFlags) resources() ([]string, error) {
	var out []string
	for _, r := range strings.Split(j.podGPUs, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	if err := attribution.CheckResources(out); err != nil {
		return nil, usageError{fmt.Errorf("--pod-gpu-resources: %w", err)}
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("--pod-gpu-resources: empty; name at least one resource, e.g. nvidia.com/gpu")}
	}
	return out, nil
}

// assigner is agent.Config.Jobs for the flags given: mapping files, else the GPUs' processes'
// cgroups, else the kubelet's pod resources where its socket exists; nil attributes none.
func (j *jobFlags) assigner(log *slog.Logger, processes func(context.Context) (map[string][]uint32, error)) func(context.Context) (attribution.Assignment, error) {
	switch {
	case j.mappingDir != "":
		log.Info("job attribution from Slurm mapping files", slog.String("dir", j.mappingDir))
		return attribution.MappingDir{Dir: j.mappingDir}.Assign
	case j.slurmCgroups:
		log.Info("job attribution from the cgroups of the GPUs' processes", slog.String("proc", j.procRoot))
		return attribution.ProcCgroups{Root: j.procRoot, Processes: processes,
			ReadError: func(pid uint32, err error) {
				log.Debug("cannot read a GPU process's cgroup", slog.Uint64("pid", uint64(pid)), slog.Any("err", err))
			},
		}.Assign
	case j.podSocket != "":
		if _, err := os.Stat(j.podSocket); err != nil {
			log.Info("no kubelet pod-resources socket: jobs are not attributed", slog.String("socket", j.podSocket))
			return nil
		}
		p := attribution.NewPodResources(j.podSocket)
		p.Resources, _ = j.resources() // checked by validate
		log.Info("job attribution from the kubelet's pod resources", slog.String("socket", j.podSocket), slog.Any("resources", p.Resources))
		return p.Assign
	}
	return nil
}
