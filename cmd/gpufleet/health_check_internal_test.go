//go:build cgo

package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/health/nvmlmock"
)

// TestHealthCheckOnMockDGX runs the command's check on NVIDIA's mock DGX H100 through the agent's
// NVML source, with faults injected before the first read or between the two reads of --window
// (the test's clock advances by the window without waiting), and checks the lines and exit codes:
// 0 OK, 1 WARN, 2 CRITICAL, and node-problem-detector's 0/1 with --npd.
func TestHealthCheckOnMockDGX(t *testing.T) {
	uuid := nvmlmock.UUID
	for _, tc := range []struct {
		name       string
		window     time.Duration
		expectGPUs int
		npd        bool
		failAt     health.State
		before     func(*nvmlmock.Node) // before the source opens the GPUs
		between    func(*nvmlmock.Node) // between the two reads (--window)
		lines      []string             // exactly, in order
		code       int
	}{
		{name: "healthy", lines: []string{"OK: 8 GPUs, 8 healthy"}, code: 0},
		{name: "remap pending on one GPU", before: func(n *nvmlmock.Node) { n.RemapPending(2, true) },
			lines: []string{"GPU 2 " + uuid(2) + " CRITICAL reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)",
				"CRITICAL: 8 GPUs, 7 healthy, worst reset_gpu"}, code: 2},
		{name: "remap failure and pending: most severe first", before: func(n *nvmlmock.Node) { n.RemapPending(1, true); n.RemapFailure(6, true) },
			lines: []string{"GPU 6 " + uuid(6) + " CRITICAL service: remap_failure=1 (a row remap failed: the GPU is out of spare rows)",
				"GPU 1 " + uuid(1) + " CRITICAL reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)",
				"CRITICAL: 8 GPUs, 6 healthy, worst service"}, code: 2},
		{name: "an Xid during the window", window: 10 * time.Second, between: func(n *nvmlmock.Node) { n.XID(5, 79) },
			lines: []string{"GPU 5 " + uuid(5) + " CRITICAL reboot_node: xid 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS: GPU has fallen off the bus → RESTART_BM",
				"CRITICAL: 8 GPUs, 7 healthy, worst reboot_node"}, code: 2},
		{name: "an Xid the catalog does not know is a warning", window: 10 * time.Second, between: func(n *nvmlmock.Node) { n.XID(0, 9999) },
			lines: []string{"GPU 0 " + uuid(0) + " WARN degraded: unknown Xid 9999", "WARN: 8 GPUs, 7 healthy, worst degraded"}, code: 1},
		{name: "a GPU lost before the check", before: func(n *nvmlmock.Node) { n.LostAtStart(4) },
			lines: []string{"GPU 4 - CRITICAL reboot_node: fell off the bus: GPU 4 fell off the bus before the agent started (nvmlDeviceGetHandleByIndex: ERROR_GPU_IS_LOST)",
				"CRITICAL: 8 GPUs, 7 healthy, worst reboot_node"}, code: 2},
		{name: "a GPU lost during the window", window: 10 * time.Second, between: func(n *nvmlmock.Node) { n.Lose(7) },
			lines: []string{"GPU 7 " + uuid(7) + " CRITICAL reboot_node: fell off the bus: GPU fell off the bus (nvmlDeviceGetUtilizationRates: ERROR_GPU_IS_LOST); no longer sampled",
				"CRITICAL: 8 GPUs, 7 healthy, worst reboot_node"}, code: 2},
		{name: "NVLink CRC errors over the window", window: 30 * time.Second, between: func(n *nvmlmock.Node) { n.NVLinkCRC(3, 5000) },
			lines: []string{"GPU 3 " + uuid(3) + " WARN degraded: nvlink_crc_flit_errors + nvlink_crc_data_errors grew 10000/min over 30s (threshold 6000/min): NVLink CRC errors (flit + data, all links) above DCGM's 100 per second",
				"WARN: 8 GPUs, 7 healthy, worst degraded"}, code: 1},
		{name: "NVLink CRC errors need the window", before: func(n *nvmlmock.Node) { n.NVLinkCRC(3, 5000) },
			lines: []string{"OK: 8 GPUs, 8 healthy"}, code: 0},
		{name: "thermal violation", window: 10 * time.Second, between: func(n *nvmlmock.Node) { n.Thermal(1, 6e9) },
			lines: []string{"GPU 1 " + uuid(1) + " WARN degraded: viol_thermal_ns grew 60 % of 10s (threshold 10 %): clocks held down by a thermal limit for over a tenth of the window: cooling",
				"WARN: 8 GPUs, 7 healthy, worst degraded"}, code: 1},
		{name: "uncorrectable ECC", before: func(n *nvmlmock.Node) { n.DBE(0, 2) },
			lines: []string{"GPU 0 " + uuid(0) + " CRITICAL reset_gpu: ecc_dbe_volatile=2 (uncorrectable ECC errors since the driver loaded or the GPU was reset)",
				"CRITICAL: 8 GPUs, 7 healthy, worst reset_gpu"}, code: 2},
		{name: "fewer GPUs than expected", expectGPUs: 9,
			lines: []string{"node - CRITICAL reboot_node: NVML sees 8 working GPUs, --expect-gpus 9", "CRITICAL: 8 GPUs, 8 healthy, worst reboot_node"}, code: 2},
		{name: "a GPU NVML counts but cannot open", before: func(n *nvmlmock.Node) { n.Unopenable(3) },
			lines: []string{"node - CRITICAL reboot_node: NVML counts 8 GPUs, 1 could not be opened (see the log)", "CRITICAL: 8 GPUs, 7 healthy, worst reboot_node"}, code: 2},
		{name: "expected GPUs present", expectGPUs: 8, lines: []string{"OK: 8 GPUs, 8 healthy"}, code: 0},
		{name: "npd: critical is NonOK", npd: true, failAt: health.RestartApp, before: func(n *nvmlmock.Node) { n.RemapPending(2, true) },
			lines: []string{"GPU 2 " + uuid(2) + " CRITICAL reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)",
				"CRITICAL: 8 GPUs, 7 healthy, worst reset_gpu"}, code: 1},
		{name: "npd: degraded is OK by default", npd: true, failAt: health.RestartApp, window: 10 * time.Second, between: func(n *nvmlmock.Node) { n.Thermal(1, 6e9) },
			lines: []string{"GPU 1 " + uuid(1) + " WARN degraded: viol_thermal_ns grew 60 % of 10s (threshold 10 %): clocks held down by a thermal limit for over a tenth of the window: cooling",
				"WARN: 8 GPUs, 7 healthy, worst degraded"}, code: 0},
		{name: "npd: degraded is NonOK from --npd-fail-at degraded", npd: true, failAt: health.Degraded, window: 10 * time.Second, between: func(n *nvmlmock.Node) { n.Thermal(1, 6e9) },
			lines: []string{"GPU 1 " + uuid(1) + " WARN degraded: viol_thermal_ns grew 60 % of 10s (threshold 10 %): clocks held down by a thermal limit for over a tenth of the window: cooling",
				"WARN: 8 GPUs, 7 healthy, worst degraded"}, code: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nvmlmock.New()
			if tc.before != nil {
				tc.before(n)
			}
			clock := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
			c := healthCheckCmd{window: tc.window, expectGPUs: tc.expectGPUs, npd: tc.npd, failAt: tc.failAt,
				now: func() time.Time { return clock },
				sleep: func(_ context.Context, d time.Duration) error {
					if d != tc.window {
						t.Errorf("slept %s, want the window %s", d, tc.window)
					}
					clock = clock.Add(d)
					if tc.between != nil {
						tc.between(n)
					}
					return nil
				}}
			if tc.between != nil && tc.window == 0 {
				t.Fatal("a fault between reads needs a window")
			}
			lines, worst, err := c.check(context.Background(), agentnvml.FromNVML(n.Server), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code := exitCode(c.report(&out, lines, worst, nil))
			if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tc.lines, "\n") {
				t.Errorf("output\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.lines, "\n"))
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
		})
	}
}

// exitCode is what Run makes of a command's error, for report's.
func exitCode(err error) int {
	var s exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &s):
		return s.code
	}
	return 1
}

// A check that cannot read the GPUs is CRITICAL (2; NonOK, 1, for node-problem-detector), with
// the reason as the line.
func TestHealthCheckReportUnreadable(t *testing.T) {
	for _, npd := range []bool{false, true} {
		c := healthCheckCmd{npd: npd, failAt: health.RestartApp}
		var out bytes.Buffer
		code := exitCode(c.report(&out, nil, 0, errors.New("NVML (libnvidia-ml.so.1) was not found")))
		want := 2
		if npd {
			want = 1
		}
		if code != want || out.String() != "CRITICAL: NVML (libnvidia-ml.so.1) was not found\n" {
			t.Errorf("npd %v: exit %d, output %q", npd, code, out.String())
		}
	}
}
