package query

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// The fleet reports below read gpu_1m (one row per GPU per minute) rather than raw samples: at
// 1 Hz that is 60 times fewer rows, and a minute is the finest resolution these questions need.
// Windows are widened to whole minutes.

// GPURank is one GPU in a ranking.
type GPURank struct {
	Cluster string  `json:"cluster"`
	Node    string  `json:"node"`
	UUID    string  `json:"uuid"`
	Model   string  `json:"model"`
	Job     string  `json:"job_id"`
	Value   float64 `json:"value"`
}

// MinuteWindow is the parameters of [from, to) widened to whole minutes, for the *SQL reports.
func MinuteWindow(from, to time.Time) store.Params {
	f := from.Truncate(time.Minute)
	t := to.Truncate(time.Minute)
	if t.Before(to) {
		t = t.Add(time.Minute)
	}
	return store.Params{"from": strconv.FormatInt(f.Unix(), 10), "to": strconv.FormatInt(t.Unix(), 10)}
}

const minuteWhere = "t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC')"

// TopGPUsSQL ranks GPUs by a gauge's mean ("avg"), peak ("max"), low ("min") or a percentile
// ("p50" … "p99", over the whole hours the window touches) over the window, highest first,
// or lowest first when ascending: the hottest, the least utilised. Filters narrow the GPUs ranked
// (the hottest in one cluster or pool); their values are bound, in the params returned.
func TopGPUsSQL(db, metric, agg string, ascending bool, k int, filters ...Filter) (string, store.Params, error) {
	i := gpumetric.IndexOfColumn(metric)
	if i < 0 || gpumetric.All()[i].Kind != gpumetric.Gauge {
		return "", nil, invalid("metric", "%q is not a gauge of "+schema.GPUSamples, metric)
	}
	if !schema.Covers(metric) {
		return "", nil, invalid("metric", "%q is not in the minute rollup yet; rank it with a raw SQL query on "+schema.GPUSamples, metric)
	}
	var value, having string
	table, window := TopGPUsTable(agg), minuteWhere
	switch agg {
	case "avg":
		value = fmt.Sprintf("sum(%s) / sum(%s)", schema.Sum(metric), schema.N(metric))
	case "max":
		value = fmt.Sprintf("max(%s)", schema.MaxCol(metric))
	case "min":
		value = fmt.Sprintf("min(%s)", schema.MinCol(metric))
	default:
		// A percentile ranks a GPU that runs hot in bursts by how often, which its peak cannot tell
		// and its mean hides. Digests are kept per GPU-hour, so it covers the whole hours the
		// window touches.
		i := quantileIndex(Agg(agg))
		if i < 0 {
			return "", nil, invalid("agg", "%q: rank by avg, max, min, p50, p90, p95 or p99", agg)
		}
		value = fmt.Sprintf("%s(%s)[%d]", schema.QuantileFunc("Merge"), schema.Digest(metric), i+1)
		window = "t >= toStartOfHour(toDateTime({from:Int64}, 'UTC')) AND t < toDateTime({to:Int64}, 'UTC')"
		having = " HAVING isFinite(value)" // hours from before 0015 hold empty digests
	}
	if k < 1 || k > 10_000 {
		return "", nil, invalid("k", "%d: must be 1..10000", k)
	}
	order := "DESC"
	if ascending {
		order = "ASC"
	}
	if err := checkFilters(filters); err != nil { // every dim is a gpu_1m key
		return "", nil, err
	}
	p := store.Params{}
	where := strings.Join(append([]string{window}, bindFilters(filters, p)...), " AND ")
	return fmt.Sprintf("SELECT cluster, node, uuid, any(model), anyLast(job_id), %s AS value FROM %s WHERE %s AND %s > 0 "+
		"GROUP BY cluster, node, uuid%s ORDER BY value %s, node, uuid LIMIT %d",
		value, store.Table(db, table), where, schema.N(metric), having, order, k), p, nil
}

// TopGPUsTable is the rollup TopGPUsSQL reads for agg: gpu_1h for a percentile (its per-GPU-hour
// digests), gpu_1m otherwise.
func TopGPUsTable(agg string) string {
	if quantileIndex(Agg(agg)) >= 0 {
		return schema.GPU1h
	}
	return schema.GPU1m
}

// TopGPUs runs TopGPUsSQL over [from, to).
func TopGPUs(ctx context.Context, s store.Store, metric, agg string, ascending bool, k int, from, to time.Time, filters ...Filter) ([]GPURank, error) {
	sql, p, err := TopGPUsSQL(s.Database(), metric, agg, ascending, k, filters...)
	if err != nil {
		return nil, err
	}
	maps.Copy(p, MinuteWindow(from, to))
	r, err := s.QueryWith(ctx, sql, p)
	if err != nil {
		return nil, tooLarge(ctx, s, fmt.Sprintf("top gpus by %s(%s)", agg, metric), err)
	}
	out := []GPURank{}
	for _, row := range r.Rows {
		out = append(out, GPURank{Cluster: asString(row[0]), Node: asString(row[1]), UUID: asString(row[2]),
			Model: asString(row[3]), Job: asString(row[4]), Value: asFloat(row[5])})
	}
	return out, nil
}

// SilentGPU is a GPU that reported in the lookback window and then stopped.
type SilentGPU struct {
	Cluster  string    `json:"cluster"`
	Node     string    `json:"node"`
	UUID     string    `json:"uuid"`
	Model    string    `json:"model"`
	LastSeen time.Time `json:"last_seen"`
}

// StoppedReportingSQL finds GPUs with a minute in the window but none since {silent_since}.
func StoppedReportingSQL(db string) string {
	return "SELECT cluster, node, uuid, any(model), max(t) AS last_seen FROM " + store.Table(db, schema.GPU1m) +
		" WHERE " + minuteWhere + " GROUP BY cluster, node, uuid" +
		" HAVING last_seen < toDateTime({silent_since:Int64}, 'UTC') ORDER BY last_seen, node, uuid"
}

// StoppedReporting lists GPUs seen in the lookback before now but silent for at least silent.
func StoppedReporting(ctx context.Context, s store.Store, now time.Time, lookback, silent time.Duration) ([]SilentGPU, error) {
	if silent < time.Minute || lookback <= silent {
		return nil, invalid("silent", "%s: at least 1m and shorter than the lookback %s", silent, lookback)
	}
	p := MinuteWindow(now.Add(-lookback), now)
	p["silent_since"] = strconv.FormatInt(now.Add(-silent).Truncate(time.Minute).Unix(), 10)
	r, err := s.QueryWith(ctx, StoppedReportingSQL(s.Database()), p)
	if err != nil {
		return nil, fmt.Errorf("gpus that stopped reporting: %w", err)
	}
	out := []SilentGPU{}
	for _, row := range r.Rows {
		t, err := time.ParseInLocation(time.DateTime, asString(row[4]), time.UTC)
		if err != nil {
			return nil, fmt.Errorf("gpus that stopped reporting: last seen %v: %w", row[4], err)
		}
		out = append(out, SilentGPU{Cluster: asString(row[0]), Node: asString(row[1]), UUID: asString(row[2]),
			Model: asString(row[3]), LastSeen: t})
	}
	return out, nil
}

// Straggler is a GPU whose mean utilisation is far below its job's typical GPU.
type Straggler struct {
	Job       string  `json:"job_id"`
	Node      string  `json:"node"`
	UUID      string  `json:"uuid"`
	MeanUtil  float64 `json:"mean_util_pct"`
	JobMedian float64 `json:"job_median_util_pct"`
	JobGPUs   uint64  `json:"job_gpus"`
}

// StragglersSQL compares each GPU's mean utilisation with the median of its job's GPUs and keeps
// those under {ratio} of it, in jobs of at least two GPUs with a median of at least 10 %.
func StragglersSQL(db string) string {
	per := "SELECT job_id, node, uuid, sum(gpu_util_sum) / sum(gpu_util_n) AS u FROM " + store.Table(db, schema.GPU1m) +
		" WHERE " + minuteWhere + " AND job_id != '' AND gpu_util_n > 0 GROUP BY job_id, node, uuid"
	return "SELECT g.job_id, g.node, g.uuid, g.u, j.med, j.n FROM (" + per + ") AS g INNER JOIN (" +
		"SELECT job_id, median(u) AS med, count() AS n FROM (" + per + ") GROUP BY job_id HAVING n >= 2 AND med >= 10" +
		") AS j ON g.job_id = j.job_id WHERE g.u < {ratio:Float64} * j.med ORDER BY g.u / j.med, g.job_id, g.uuid"
}

// Stragglers runs StragglersSQL over [from, to); ratio is in (0, 1), e.g. 0.5 for "under half".
func Stragglers(ctx context.Context, s store.Store, from, to time.Time, ratio float64) ([]Straggler, error) {
	if !(ratio > 0 && ratio < 1) {
		return nil, invalid("ratio", "%v: must be between 0 and 1", ratio)
	}
	p := MinuteWindow(from, to)
	p["ratio"] = strconv.FormatFloat(ratio, 'g', -1, 64)
	r, err := s.QueryWith(ctx, StragglersSQL(s.Database()), p)
	if err != nil {
		return nil, fmt.Errorf("stragglers: %w", err)
	}
	out := []Straggler{}
	for _, row := range r.Rows {
		out = append(out, Straggler{Job: asString(row[0]), Node: asString(row[1]), UUID: asString(row[2]),
			MeanUtil: asFloat(row[3]), JobMedian: asFloat(row[4]), JobGPUs: asUint(row[5])})
	}
	return out, nil
}

// EventCount is how many events of one kind a node, rack, pool or model had.
type EventCount struct {
	Kind  string `json:"kind"`
	Key   string `json:"key"` // the node, rack, pool or model
	GPUs  uint64 `json:"gpus"`
	Count uint64 `json:"count"`
}

// EventCountsSQL counts gpu_events by kind and node, rack or pool, or by kind and GPU model (events carry the
// GPU UUID; the model comes from gpu_1h).
func EventCountsSQL(db, by string) (string, error) {
	events := store.Table(db, schema.GPUEvents)
	where := "time >= fromUnixTimestamp64Milli({from_ms:Int64}) AND time < fromUnixTimestamp64Milli({to_ms:Int64})"
	switch by {
	case "node", "rack", "pool": // columns of gpu_events, from this allow-list
		return "SELECT kind, " + by + ", uniqExact(uuid), count() AS c FROM " + events + " WHERE " + where +
			" GROUP BY kind, " + by + " ORDER BY c DESC, kind, " + by, nil
	case "model":
		return "SELECT e.kind, ifNull(nullIf(m.model, ''), 'unknown'), uniqExact(e.uuid), count() AS c FROM " + events + " AS e LEFT JOIN " +
			"(SELECT uuid, any(model) AS model FROM " + store.Table(db, schema.GPU1h) +
			" WHERE t >= toStartOfHour(fromUnixTimestamp64Milli({from_ms:Int64})) - INTERVAL 1 DAY GROUP BY uuid) AS m ON e.uuid = m.uuid WHERE " +
			"e.time >= fromUnixTimestamp64Milli({from_ms:Int64}) AND e.time < fromUnixTimestamp64Milli({to_ms:Int64})" +
			" GROUP BY e.kind, m.model ORDER BY c DESC, e.kind", nil
	}
	return "", invalid("by", "%q: count events by node, rack, pool or model", by)
}

// EventCounts runs EventCountsSQL over [from, to).
func EventCounts(ctx context.Context, s store.Store, by string, from, to time.Time) ([]EventCount, error) {
	sql, err := EventCountsSQL(s.Database(), by)
	if err != nil {
		return nil, err
	}
	r, err := s.QueryWith(ctx, sql, store.Params{"from_ms": strconv.FormatInt(from.UnixMilli(), 10),
		"to_ms": strconv.FormatInt(to.UnixMilli(), 10)})
	if err != nil {
		return nil, fmt.Errorf("event counts by %s: %w", by, err)
	}
	out := []EventCount{}
	for _, row := range r.Rows {
		out = append(out, EventCount{Kind: asString(row[0]), Key: asString(row[1]), GPUs: asUint(row[2]), Count: asUint(row[3])})
	}
	return out, nil
}

// JobUsage is what one job used over a window.
type JobUsage struct {
	Job       string  `json:"job_id"`
	GPUs      uint64  `json:"gpus"`
	GPUHours  float64 `json:"gpu_hours"`
	MeanUtil  float64 `json:"mean_util_pct"`
	EnergyKWh float64 `json:"energy_kwh"`
}

// JobUsageSQL sums per job: distinct GPUs, GPU-hours (GPU-minutes with a sample / 60), mean
// utilisation weighted by readings, and energy as the reset-aware increase of energy_mj. Filters
// keep the GPU-minutes whose labels match (every dimension is a gpu_1m column); the parameters are
// theirs, the window's are MinuteWindow's.
func JobUsageSQL(db string, filters ...Filter) (string, store.Params) {
	t := store.Table(db, schema.GPU1m)
	p := store.Params{}
	where := strings.Join(append([]string{minuteWhere}, bindFilters(filters, p)...), " AND ")
	return "SELECT u.job_id, u.gpus, u.gpu_minutes / 60, u.mean_util, ifNull(e.mj, 0) / 3.6e9 FROM (" +
		"SELECT job_id, uniqExact(uuid) AS gpus, count() AS gpu_minutes, sum(gpu_util_sum) / nullIf(sum(gpu_util_n), 0) AS mean_util FROM " + t +
		" WHERE " + where + " AND job_id != '' GROUP BY job_id) AS u LEFT JOIN (" +
		"SELECT job_id, sum(d) AS mj FROM (" + bucketIncreases(t, "energy_mj", []string{"job_id"}, where) + ") GROUP BY job_id" +
		") AS e ON u.job_id = e.job_id ORDER BY u.gpu_minutes DESC, u.job_id", p
}

// JobUsages runs JobUsageSQL over [from, to).
func JobUsages(ctx context.Context, s store.Store, from, to time.Time, filters ...Filter) ([]JobUsage, error) {
	sql, p := JobUsageSQL(s.Database(), filters...)
	maps.Copy(p, MinuteWindow(from, to))
	r, err := s.QueryWith(ctx, sql, p)
	if err != nil {
		return nil, fmt.Errorf("job usage: %w", err)
	}
	out := []JobUsage{}
	for _, row := range r.Rows {
		out = append(out, JobUsage{Job: asString(row[0]), GPUs: asUint(row[1]), GPUHours: asFloat(row[2]),
			MeanUtil: asFloat(row[3]), EnergyKWh: asFloat(row[4])})
	}
	return out, nil
}
