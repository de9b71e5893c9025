package main

// `gpufleet health-check`: this node's GPUs read once (or twice, --window apart) through NVML and
// judged by the agent's health rules (internal/health), for Slurm's HealthCheckProgram and a
// Kubernetes node-problem-detector custom plugin (deploy/slurm, deploy/npd,
// docs/health.md). Not to be confused with `gpufleet healthcheck URL`, the HTTP probe of a
// gpufleet daemon that container healthchecks run.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/retry"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// exitStatus ends a command with code once it has printed what it has to say (health-check's
// 0/1/2 are its result, not a failure of the command).
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Exit codes of health-check: the Nagios convention Slurm scripts and most monitoring read, and
// node-problem-detector's custom-plugin protocol (0 OK, 1 NonOK, 2 Unknown) with --npd.
const (
	checkOK       = 0
	checkWarn     = 1
	checkCritical = 2
)

// healthCheckCmd is `gpufleet health-check`'s flags and, for tests, its clock.
type healthCheckCmd struct {
	window     time.Duration
	timeout    time.Duration
	expectGPUs int
	npd        bool
	npdFailAt  string
	failAt     health.State

	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

func runHealthCheckCmd(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "health-check", "Reads this node's GPUs through NVML once and judges them by the agent's health rules\n"+
		"(docs/health.md): one line per finding on stdout, such as\n"+
		"  GPU 3 GPU-8e1c… CRITICAL reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)\n"+
		"then a summary line, and exit 0 OK, 1 WARN (a GPU degraded), 2 CRITICAL (a GPU needs an application\n"+
		"restart, a GPU reset, a node reboot or service; NVML missing or not answering; fewer GPUs than\n"+
		"--expect-gpus). With --window it reads twice, that far apart, so that the rate rules (NVLink\n"+
		"errors, throttling) apply and Xids raised meanwhile count; Xids from before it ran are the\n"+
		"agent's to report. For Slurm's HealthCheckProgram (deploy/slurm) and, with --npd, a Kubernetes\n"+
		"node-problem-detector custom plugin (deploy/npd).\n"+
		"Not `gpufleet healthcheck URL`, the HTTP probe of a gpufleet daemon's /healthz for containers.")
	c := healthCheckCmd{now: time.Now, sleep: retry.Sleep}
	f.DurationVar(&c.window, "window", 0, "read the GPUs twice, this far apart, for the rate rules (0: one read)")
	f.DurationVar(&c.timeout, "check-timeout", 30*time.Second, "give up, CRITICAL, when NVML has not answered within this (a hung GPU can block\n"+
		"NVML calls; Slurm kills a health check that runs too long)")
	f.IntVar(&c.expectGPUs, "expect-gpus", 0, "CRITICAL when NVML sees fewer GPUs than this (0: no check)")
	f.BoolVar(&c.npd, "npd", false, "node-problem-detector exit codes: 1 (NonOK) from --npd-fail-at up and when NVML cannot\n"+
		"be read, 0 otherwise (NPD reads 2 as Unknown)")
	f.StringVar(&c.npdFailAt, "npd-fail-at", "restart_app", "with --npd: the least health state that exits 1 (degraded, restart_app, reset_gpu,\n"+
		"reboot_node, service)")
	if err := f.parse(args); err != nil {
		return err
	}
	var err error
	if c.failAt, err = health.ParseState(c.npdFailAt); err != nil || c.failAt == health.Healthy {
		return usageError{fmt.Errorf("--npd-fail-at %q: want degraded, restart_app, reset_gpu, reboot_node or service", c.npdFailAt)}
	}
	if c.window < 0 || c.expectGPUs < 0 {
		return usageError{fmt.Errorf("--window and --expect-gpus must not be negative")}
	}
	if c.timeout <= c.window {
		return usageError{fmt.Errorf("--check-timeout %s must be longer than --window %s", c.timeout, c.window)}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	// The source's own complaints (a metric it cannot read) are not findings: warnings and up only.
	if !f.isGiven("log-level") {
		log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type outcome struct {
		lines []string
		worst health.State
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		lib, closeNVML, err := agentnvml.Open()
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			done <- outcome{err: fmt.Errorf("%w; the node's GPUs cannot be checked", err)}
			return
		case errors.Is(err, agentnvml.ErrLibraryNotFound):
			done <- outcome{err: errors.New("NVML (libnvidia-ml.so.1) was not found: the NVIDIA driver is not installed or not loaded, so no GPU on this node can be used")}
			return
		case err != nil:
			done <- outcome{err: fmt.Errorf("initialise NVML: %w", err)}
			return
		}
		defer closeNVML()
		lines, worst, err := c.check(ctx, lib, log)
		done <- outcome{lines, worst, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		// The reading goroutine may be stuck in NVML; the process exits without it.
		o.err = fmt.Errorf("NVML did not answer within --check-timeout %s (a GPU or the driver hangs)", c.timeout)
	}
	return c.report(e.stdout, o.lines, o.worst, o.err)
}

// report prints the findings and the summary and returns the exit status. err is a check that
// could not read the GPUs: CRITICAL, since Slurm must drain a node whose driver is gone.
func (c *healthCheckCmd) report(w io.Writer, lines []string, worst health.State, err error) error {
	code := checkOK
	switch {
	case err != nil:
		code = checkCritical
		lines = append(lines, "CRITICAL: "+err.Error())
	case worst.Critical():
		code = checkCritical
	case worst == health.Degraded:
		code = checkWarn
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if c.npd {
		code = checkOK
		if err != nil || (worst >= c.failAt) {
			code = 1
		}
	}
	if code == checkOK {
		return nil
	}
	return exitStatus{code}
}

// check reads the GPUs lib sees (twice with --window) and returns a line per finding, most severe
// first, then the summary line, and the worst state.
func (c *healthCheckCmd) check(ctx context.Context, lib agentnvml.Lib, log *slog.Logger) ([]string, health.State, error) {
	count, err := lib.DeviceCount()
	if err != nil {
		return nil, 0, fmt.Errorf("count GPUs: %w", err)
	}
	src, err := agentnvml.New(lib, agentnvml.Options{Node: "health-check", Logger: log})
	if err != nil {
		return nil, 0, err
	}
	defer src.Close()
	ev := health.NewEvaluator(health.Config{Window: c.window})
	b := &wirepb.SampleBatch{}
	reads := 1
	if c.window > 0 {
		reads = 2
	}
	for i := range reads {
		if i > 0 {
			if err := c.sleep(ctx, c.window); err != nil {
				return nil, 0, fmt.Errorf("wait --window: %w", err)
			}
		}
		first := len(b.TimeUnixMs)
		evs := src.Sample(c.now(), b, nil)
		ev.Observe(b, first, evs)
	}
	var findings []string
	worst := health.Healthy
	fs := ev.Findings()
	// Most severe first: node-problem-detector keeps the first 80 characters of the output.
	slices.SortStableFunc(fs, func(a, b health.Finding) int { return cmp.Compare(b.State, a.State) })
	for _, f := range fs {
		worst = max(worst, f.State)
		findings = append(findings, fmt.Sprintf("GPU %d %s %s %s: %s", f.GPUIndex, cmp.Or(f.UUID, "-"), level(f.State), f.State, f.Reason))
	}
	gpus := ev.GPUs()
	seen := 0
	bad := 0
	for _, g := range gpus {
		if g.UUID != "" {
			seen++
		}
		if g.State != health.Healthy {
			bad++
		}
	}
	lost := len(gpus) - seen // lost before they could be opened: known by index only
	if n := count - seen - lost; n > 0 {
		worst = max(worst, health.RebootNode)
		findings = append(findings, fmt.Sprintf("node - CRITICAL %s: NVML counts %d GPUs, %d could not be opened (see the log)", health.RebootNode, count, n))
	}
	if c.expectGPUs > 0 && seen < c.expectGPUs {
		worst = max(worst, health.RebootNode)
		findings = append(findings, fmt.Sprintf("node - CRITICAL %s: NVML sees %d working GPUs, --expect-gpus %d", health.RebootNode, seen, c.expectGPUs))
	}
	summary := fmt.Sprintf("%s: %d GPUs, %d healthy", level(worst), count, len(gpus)-bad)
	if worst != health.Healthy {
		summary += fmt.Sprintf(", worst %s", worst)
	}
	if count == 0 {
		worst = max(worst, health.Degraded)
		summary = fmt.Sprintf("%s: NVML sees no GPUs", level(worst))
	}
	return append(findings, summary), worst, nil
}

// level is a state's word in health-check's output.
func level(s health.State) string {
	switch {
	case s.Critical():
		return "CRITICAL"
	case s == health.Degraded:
		return "WARN"
	}
	return "OK"
}
