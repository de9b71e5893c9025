// Package query turns questions about the fleet into ClickHouse SQL and typed answers. It is shared
// by `gpufleet query`, the demo and (later) the HTTP API and the Grafana plugin.
package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Summary is the fleet at a glance over a time window.
type Summary struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Samples   uint64    `json:"samples"`
	GPUs      uint64    `json:"gpus"`
	Nodes     uint64    `json:"nodes"`
	MeanUtil  float64   `json:"mean_util_pct"`
	P99Util   float64   `json:"p99_util_pct"`
	XIDs      uint64    `json:"xid_events"`
	Throttles uint64    `json:"throttle_events"`
	Hottest   []HotGPU  `json:"hottest"`
}

// HotGPU is one row of the hottest-GPUs list.
type HotGPU struct {
	Node     string  `json:"node"`
	GPU      uint64  `json:"gpu"`
	UUID     string  `json:"uuid"`
	Model    string  `json:"model"`
	MaxTemp  float64 `json:"max_temp_c"`
	MeanUtil float64 `json:"mean_util_pct"`
}

// timeFilter restricts col to [from, to). The bounds are integers formatted here, never user text.
func timeFilter(col string, from, to time.Time) string {
	return fmt.Sprintf("%s >= fromUnixTimestamp64Milli(%d) AND %s < fromUnixTimestamp64Milli(%d)",
		col, from.UnixMilli(), col, to.UnixMilli())
}

// SummarySQL returns the three statements FleetSummary runs (exposed for golden tests).
func SummarySQL(db string, from, to time.Time, topK int) (overall, hottest, events string) {
	w := timeFilter("time", from, to)
	// A GPU is a physical one: MIG instances have rows of their own but are not counted again.
	overall = "SELECT count() AS samples, uniqExactIf(uuid, parent_uuid = '') AS gpus, uniqExact(node) AS nodes, " +
		"ifNotFinite(avg(gpu_util), 0) AS mean_util, ifNotFinite(quantileTDigest(0.99)(gpu_util), 0) AS p99_util " +
		"FROM " + store.Table(db, schema.GPUSamples) + " WHERE " + w
	hottest = "SELECT node, gpu, uuid, any(model) AS model, max(temp_gpu_c) AS max_temp, avg(gpu_util) AS mean_util " +
		"FROM " + store.Table(db, schema.GPUSamples) + " WHERE " + w + " AND temp_gpu_c IS NOT NULL " +
		"GROUP BY node, gpu, uuid ORDER BY max_temp DESC, node, gpu LIMIT " + fmt.Sprint(topK)
	events = "SELECT countIf(kind = 'xid') AS xids, countIf(kind = 'throttle') AS throttles " +
		"FROM " + store.Table(db, schema.GPUEvents) + " WHERE " + w
	return overall, hottest, events
}

// FleetSummary answers "how is the fleet doing" for [from, to).
func FleetSummary(ctx context.Context, s store.Store, from, to time.Time, topK int) (*Summary, error) {
	overall, hottest, events := SummarySQL(s.Database(), from, to, topK)
	sum := &Summary{From: from.UTC(), To: to.UTC()}
	r, err := s.Query(ctx, overall)
	if err != nil {
		return nil, fmt.Errorf("fleet summary: %w", err)
	}
	if len(r.Rows) == 1 {
		row := r.Rows[0]
		sum.Samples, sum.GPUs, sum.Nodes = asUint(row[0]), asUint(row[1]), asUint(row[2])
		sum.MeanUtil, sum.P99Util = asFloat(row[3]), asFloat(row[4])
	}
	r, err = s.Query(ctx, hottest)
	if err != nil {
		return nil, fmt.Errorf("hottest gpus: %w", err)
	}
	for _, row := range r.Rows {
		sum.Hottest = append(sum.Hottest, HotGPU{Node: asString(row[0]), GPU: asUint(row[1]), UUID: asString(row[2]),
			Model: asString(row[3]), MaxTemp: asFloat(row[4]), MeanUtil: asFloat(row[5])})
	}
	r, err = s.Query(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("event counts: %w", err)
	}
	if len(r.Rows) == 1 {
		sum.XIDs, sum.Throttles = asUint(r.Rows[0][0]), asUint(r.Rows[0][1])
	}
	return sum, nil
}

// WriteText prints the summary for a terminal.
func (s *Summary) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "fleet summary %s .. %s\n", s.From.Format(time.RFC3339), s.To.Format(time.RFC3339))
	fmt.Fprintf(w, "  GPUs reporting  %d on %d nodes (%d samples)\n", s.GPUs, s.Nodes, s.Samples)
	fmt.Fprintf(w, "  utilisation     mean %.1f%%  p99 %.1f%%\n", s.MeanUtil, s.P99Util)
	fmt.Fprintf(w, "  events          %d XID, %d throttle transitions\n", s.XIDs, s.Throttles)
	if len(s.Hottest) == 0 {
		return nil
	}
	fmt.Fprintf(w, "  hottest GPUs:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "    NODE\tGPU\tMAX °C\tMEAN UTIL %%\tMODEL\tUUID\n")
	for _, h := range s.Hottest {
		fmt.Fprintf(tw, "    %s\t%d\t%.0f\t%.1f\t%s\t%s\n", h.Node, h.GPU, h.MaxTemp, h.MeanUtil, h.Model, h.UUID)
	}
	return tw.Flush()
}

// WriteJSON prints the summary as one JSON document.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func asUint(v any) uint64 {
	switch x := v.(type) {
	case uint64:
		return x
	case int64:
		return uint64(x)
	case float64:
		return uint64(x)
	}
	return 0
}

func asFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case uint64:
		return float64(x)
	case int64:
		return float64(x)
	}
	return 0
}

func asString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}
