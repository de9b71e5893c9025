package main_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The built binary's health-check on a host without the NVIDIA driver (this one: no GPU): one
// CRITICAL line saying so, and exit 2, so Slurm drains a node whose driver is gone; with --npd,
// node-problem-detector's NonOK (1).
func TestHealthCheckBinaryWithoutNVML(t *testing.T) {
	if _, err := exec.LookPath("nvidia-smi"); err == nil {
		t.Skip("this host has the NVIDIA driver: the no-NVML path is not reachable here")
	}
	const line = "CRITICAL: NVML (libnvidia-ml.so.1) was not found: the NVIDIA driver is not installed or not loaded, so no GPU on this node can be used\n"
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"health-check"}, 2},
		{[]string{"health-check", "--window", "1s"}, 2},
		{[]string{"health-check", "--npd"}, 1},
	} {
		r := run(t, nil, tc.args...)
		if r.code != tc.code || r.stdout != line {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, r.code, r.stdout, r.stderr, tc.code, line)
		}
	}
}

// health-check (the GPUs) and healthcheck (a daemon's HTTP probe) say which is which, in their
// own help and in the command list; a bad health-check flag is a usage error (2: Slurm drains a
// node whose check is misconfigured rather than trusting it).
func TestHealthCheckHelpAndUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"health-check", "--help"}, []string{"Usage: gpufleet health-check", "exit 0 OK, 1 WARN", "2 CRITICAL",
			"Not `gpufleet healthcheck URL`, the HTTP probe", "--window", "--npd", "--expect-gpus", "--check-timeout"}},
		{[]string{"healthcheck", "--help"}, []string{"Usage: gpufleet healthcheck URL", "It does not look at GPUs", "run `gpufleet health-check`"}},
		{[]string{"help"}, []string{"health-check judge this node's GPUs through NVML", "healthcheck  HTTP probe"}},
	} {
		r := run(t, nil, tc.args...)
		if r.code != 0 {
			t.Errorf("%v: exit %d: %s", tc.args, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tc.args, w, r.stdout)
			}
		}
	}
	for _, args := range [][]string{
		{"health-check", "--npd-fail-at", "healthy"},
		{"health-check", "--window", "1m", "--check-timeout", "30s"},
		{"health-check", "extra"},
	} {
		if r := run(t, nil, args...); r.code != 2 || !strings.Contains(r.stderr, "see 'gpufleet health-check --help'") {
			t.Errorf("%v: exit %d, stderr %q; want a usage error (2)", args, r.code, r.stderr)
		}
	}
}
