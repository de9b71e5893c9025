package plugin

import (
	"testing"

	"github.com/gpufleet/gpufleet/query"
)

func TestUnit(t *testing.T) {
	for _, c := range []struct {
		metric string
		agg    query.Agg
		want   string
	}{
		{"gpu_util", query.P99, "percent"},
		{"temp_gpu_c", query.Last, "celsius"},
		{"power_w", query.Sum, "watt"},
		{"fb_used_mib", query.Avg, "mbytes"},
		{"clock_sm_mhz", query.Max, "rotmhz"},
		{"pcie_tx_kibs", query.Avg, "KiBs"},
		{"gpu_util", query.Count, ""},
		{"energy_mj", query.Rate, "mwatt"},
		{"energy_mj", query.Increase, "suffix: mJ"},
		{"nvlink_tx_kib", query.Rate, "KiBs"},
		{"nvlink_tx_kib", query.Increase, "kbytes"},
		{"pcie_replays", query.Rate, "cps"},
		{"pcie_replays", query.Increase, ""},
		{"throttle_reasons", query.Increase, ""},
		{"pstate", query.Avg, ""},
		{"no_such_metric", query.Avg, ""},
	} {
		if got := unit(c.metric, c.agg); got != c.want {
			t.Errorf("unit(%s, %s) = %q, want %q", c.metric, c.agg, got, c.want)
		}
	}
}
