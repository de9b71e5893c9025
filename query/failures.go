package query

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// The failure reports (health, drain, interruptions) read the GPU health state the agents write as
// gpu_events rows of kind 'health' (code = the GPU's new state, message = the reason), one at
// every state change and one when an agent starts. A GPU's state is its newest such event; a GPU
// with none is healthy. The fleet is every physical GPU with a sample in the look-back (gpu_1h,
// one row per GPU-hour, so a week of a large fleet is cheap to list); one whose newest sample is
// older than the silence threshold has stopped reporting, whatever its last state. See
// docs/failures.md.

// ActionStoppedReporting is the drain list's action for a GPU whose newest sample is older than the
// silence threshold: health's rule of that name, which only the fleet's reports can apply.
const ActionStoppedReporting = "stopped_reporting"

// stoppedState is the state the stopped_reporting rule asks for; a GPU that stopped reporting is
// in the more severe of it and its last state, as a GPU is in the most severe state any of its
// conditions asks for.
var stoppedState = func() health.State {
	r, ok := health.RuleNamed(ActionStoppedReporting)
	if !ok {
		panic("health has no rule " + ActionStoppedReporting)
	}
	return r.State
}()

// StateName is the name of health state n (health.State); a number this version does not know
// is "state_<n>".
func StateName(n uint64) string {
	if n < uint64(len(health.States)) {
		return health.State(n).String()
	}
	return "state_" + strconv.FormatUint(n, 10)
}

// Defaults and bounds of the failure reports' parameters.
const (
	DefaultLookback = 7 * 24 * time.Hour
	MaxLookback     = 90 * 24 * time.Hour
	DefaultSilent   = 2 * time.Minute
	DefaultWithin   = 300 * time.Second
	MaxWithin       = 24 * time.Hour
	DefaultDrainMax = 1000
	MaxDrainRows    = 10_000
	// EventAfterLastSample is how long after a job's last sample a fatal event still counts as its
	// cause: the job's end lies between its last sample and the next, and a fatal XID that killed it
	// is stamped in that gap.
	EventAfterLastSample = 30 * time.Second
)

// FleetWindow is what the health and drain reports look at: the fleet as of At, every GPU seen
// in the Lookback before it, silent when its newest sample is more than Silent old.
type FleetWindow struct {
	At       time.Time
	Lookback time.Duration // default DefaultLookback
	Silent   time.Duration // default DefaultSilent
	Filters  []Filter      // on the GPUs' labels (not job)
}

func (w FleetWindow) withDefaults() FleetWindow {
	if w.Lookback == 0 {
		w.Lookback = DefaultLookback
	}
	if w.Silent == 0 {
		w.Silent = DefaultSilent
	}
	return w
}

func (w FleetWindow) validate() error {
	switch {
	case w.At.IsZero():
		return invalid("at", "no time given")
	case w.Lookback < time.Hour || w.Lookback > MaxLookback:
		return invalid("lookback", "%s: between 1h and %s", w.Lookback, MaxLookback)
	case w.Silent < time.Minute || w.Silent >= w.Lookback:
		return invalid("silent", "%s: at least 1m and shorter than the lookback %s", w.Silent, w.Lookback)
	}
	return checkGPUFilters(w.Filters)
}

// checkGPUFilters allows the dimensions gpu_1h keeps per GPU; job is not one of a GPU's labels
// (it changes under it).
func checkGPUFilters(filters []Filter) error {
	if err := checkFilters(filters); err != nil {
		return err
	}
	for _, f := range filters {
		if f.Dim == Job {
			return invalid("filters", "job: the failure reports filter GPUs by cluster, node, gpu, model, rack or pool")
		}
	}
	return nil
}

// fleetStateSQL is the WITH clause both the health and drain reports start from: gpus, one row
// per GPU of the fleet with its state, whether it stopped reporting, its index, job and since.
// Parameters: at_ms, from_ms, silent_ms (Unix ms) and the filters'.
func fleetStateSQL(db string, filters []Filter, p store.Params) string {
	at := "fromUnixTimestamp64Milli({at_ms:Int64}, 'UTC')"
	silent := "fromUnixTimestamp64Milli({silent_ms:Int64}, 'UTC')"
	where := append([]string{
		"t >= toStartOfHour(fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC'))", "t <= " + at,
		"NOT startsWith(toString(uuid), 'MIG-')", // MIG instances are not GPUs of their own here
	}, bindFilters(filters, p)...)
	return "WITH " +
		// Every GPU seen in the look-back, and the hour it was last seen in.
		"fleet AS (SELECT cluster, node, uuid, any(model) AS model, max(t) AS last_hour FROM " + store.Table(db, schema.GPU1h) +
		" WHERE " + strings.Join(where, " AND ") + " GROUP BY cluster, node, uuid), " +
		// A GPU with a minute starting after the threshold has a sample after it: reporting.
		"recent AS (SELECT cluster, node, uuid, argMax(job_id, t) AS job FROM " + store.Table(db, schema.GPU1m) +
		" WHERE t > " + silent + " AND t <= " + at + " GROUP BY cluster, node, uuid), " +
		"cand AS (SELECT cluster, node, uuid, last_hour FROM fleet WHERE (cluster, node, uuid) NOT IN (SELECT cluster, node, uuid FROM recent)), " +
		// The others' newest raw sample, read only on their nodes and from their last hour on.
		"raw AS (SELECT cluster, node, uuid, max(time) AS last_seen, argMax(gpu, time) AS gpu, argMax(job_id, time) AS job FROM " +
		store.Table(db, schema.GPUSamples) + " WHERE time >= (SELECT min(last_hour) FROM cand) AND time <= " + at +
		" AND (cluster, node, uuid) IN (SELECT cluster, node, uuid FROM cand) GROUP BY cluster, node, uuid), " +
		// Each GPU's newest health event, and when the run of that state began.
		"health AS (SELECT cluster, node, gpu, arraySort(groupArray((time, seq, code, message, toString(uuid)))) AS ev, " +
		"tupleElement(ev[-1], 3) AS state, tupleElement(ev[-1], 4) AS reason, tupleElement(ev[-1], 5) AS h_uuid, " +
		"tupleElement(ev[arrayLastIndex(x -> tupleElement(x, 3) != state, ev) + 1], 1) AS since FROM " + store.Table(db, schema.GPUEvents) +
		" WHERE kind = 'health' AND time <= " + at + " GROUP BY cluster, node, gpu), " +
		"gpus AS (SELECT f.cluster AS cluster, f.node AS node, f.uuid AS uuid, f.model AS model, " +
		"rc.uuid != '' AS reporting, r.uuid != '' AS has_raw, h.h_uuid != '' AS has_health, " +
		"if(has_health, h.state, 0) AS state, h.reason AS reason, " +
		"NOT reporting AND (NOT has_raw OR r.last_seen < " + silent + ") AS stopped, " +
		"if(has_raw, r.gpu, h.gpu) AS gpu, if(reporting, toString(rc.job), toString(r.job)) AS job, " +
		"toUnixTimestamp64Milli(if(has_raw, r.last_seen, toDateTime64(f.last_hour, 3, 'UTC'))) AS last_seen_ms, " +
		"toUnixTimestamp64Milli(h.since) AS since_ms " +
		"FROM fleet AS f " +
		"LEFT JOIN recent AS rc ON f.cluster = rc.cluster AND f.node = rc.node AND f.uuid = rc.uuid " +
		"LEFT JOIN raw AS r ON f.cluster = r.cluster AND f.node = r.node AND f.uuid = r.uuid " +
		"LEFT JOIN health AS h ON f.cluster = h.cluster AND f.node = h.node AND toString(f.uuid) = h.h_uuid) "
}

func (w FleetWindow) params() store.Params {
	return store.Params{
		"at_ms":     strconv.FormatInt(w.At.UnixMilli(), 10),
		"from_ms":   strconv.FormatInt(w.At.Add(-w.Lookback).UnixMilli(), 10),
		"silent_ms": strconv.FormatInt(w.At.Add(-w.Silent).UnixMilli(), 10),
	}
}

// stoppedCode stands for "stopped reporting" in HealthSQL's state column: no state is numbered
// that high (health.State counts up from 0 and is never renumbered).
const stoppedCode = 255

// HealthCounts are GPUs by state. A GPU that stopped reporting counts there, not in its last
// state, so the counts add up to the GPUs.
type HealthCounts struct {
	GPUs             uint64 `json:"gpus"`
	Healthy          uint64 `json:"healthy"`
	Degraded         uint64 `json:"degraded"`
	RestartApp       uint64 `json:"restart_app"`
	ResetGPU         uint64 `json:"reset_gpu"`
	RebootNode       uint64 `json:"reboot_node"`
	Service          uint64 `json:"service"`
	StoppedReporting uint64 `json:"stopped_reporting"`
	// Unknown are GPUs in a state this version has no name for (a newer agent's).
	Unknown uint64 `json:"unknown"`
}

func (c *HealthCounts) add(state, n uint64) {
	c.GPUs += n
	if state == stoppedCode {
		c.StoppedReporting += n
		return
	}
	if state >= uint64(len(health.States)) {
		c.Unknown += n
		return
	}
	switch health.State(state) {
	case health.Healthy:
		c.Healthy += n
	case health.Degraded:
		c.Degraded += n
	case health.RestartApp:
		c.RestartApp += n
	case health.ResetGPU:
		c.ResetGPU += n
	case health.RebootNode:
		c.RebootNode += n
	case health.Service:
		c.Service += n
	}
}

// HealthGroup is the counts of one cluster or one model.
type HealthGroup struct {
	Key string `json:"key"`
	HealthCounts
}

// HealthReport is the fleet's GPUs by state, in all, by model and by cluster.
type HealthReport struct {
	At        time.Time     `json:"at"`
	Fleet     HealthCounts  `json:"fleet"`
	ByModel   []HealthGroup `json:"by_model"`
	ByCluster []HealthGroup `json:"by_cluster"`
}

// HealthSQL counts the fleet's GPUs per cluster, model and state (stoppedCode for stopped
// reporting), with the params to run it.
func HealthSQL(db string, w FleetWindow) (string, store.Params, error) {
	w = w.withDefaults()
	if err := w.validate(); err != nil {
		return "", nil, err
	}
	p := w.params()
	return fleetStateSQL(db, w.Filters, p) + "SELECT cluster, model, if(stopped, " + strconv.Itoa(stoppedCode) +
		", toUInt64(state)) AS st, count() FROM gpus GROUP BY cluster, model, st ORDER BY cluster, model, st", p, nil
}

// Health is HealthSQL's answer, added up by model and by cluster.
func Health(ctx context.Context, s store.Store, w FleetWindow) (*HealthReport, error) {
	sql, p, err := HealthSQL(s.Database(), w)
	if err != nil {
		return nil, err
	}
	r, err := s.QueryWith(ctx, sql, p)
	if err != nil {
		return nil, tooLarge(ctx, s, "health report", err)
	}
	rep := &HealthReport{At: w.At.UTC(), ByModel: []HealthGroup{}, ByCluster: []HealthGroup{}}
	group := func(gs *[]HealthGroup, key string) *HealthCounts {
		for i := range *gs {
			if (*gs)[i].Key == key {
				return &(*gs)[i].HealthCounts
			}
		}
		*gs = append(*gs, HealthGroup{Key: key})
		return &(*gs)[len(*gs)-1].HealthCounts
	}
	for _, row := range r.Rows {
		if len(row) != 4 {
			return nil, fmt.Errorf("health report: %d columns, want 4", len(row))
		}
		state, n := asUint(row[2]), asUint(row[3])
		rep.Fleet.add(state, n)
		group(&rep.ByCluster, asString(row[0])).add(state, n)
		group(&rep.ByModel, asString(row[1])).add(state, n)
	}
	slices.SortFunc(rep.ByModel, func(a, b HealthGroup) int { return strings.Compare(a.Key, b.Key) })
	return rep, nil
}

// DrainGPU is one GPU to act on.
type DrainGPU struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	GPU     uint64 `json:"gpu"`
	UUID    string `json:"uuid"`
	Model   string `json:"model"`
	// Action is the state's name (restart_app, reset_gpu, reboot_node, service, degraded) or
	// stopped_reporting.
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Since is when the GPU entered the state (the first event of its newest run of that state),
	// or, stopped reporting, its newest sample.
	Since time.Time `json:"since"`
	// Job is the job on the GPU at its newest sample, empty when none.
	Job string `json:"job_id"`
	// Severity orders the list: the number of the GPU's state (health.State, ordered by severity:
	// 5 service … 1 degraded); stopped reporting, the more severe of the stopped_reporting rule's
	// state (degraded) and the GPU's last state.
	Severity uint64 `json:"severity"`
}

// DrainReport is the drain list, most severe first, then longest in that state first.
type DrainReport struct {
	At   time.Time  `json:"at"`
	GPUs []DrainGPU `json:"gpus"`
	// Truncated says the list was cut at the limit asked for.
	Truncated bool `json:"truncated"`
}

// DrainSQL lists the fleet's GPUs that are not healthy or stopped reporting, at most limit+1 of
// them (one more to tell a cut list), with the params to run it.
func DrainSQL(db string, w FleetWindow, limit int) (string, store.Params, error) {
	w = w.withDefaults()
	if err := w.validate(); err != nil {
		return "", nil, err
	}
	if limit < 1 || limit > MaxDrainRows {
		return "", nil, invalid("limit", "%d: between 1 and %d", limit, MaxDrainRows)
	}
	p := w.params()
	p["limit"] = strconv.Itoa(limit + 1)
	return fleetStateSQL(db, w.Filters, p) + "SELECT cluster, node, gpu, uuid, model, stopped, toUInt64(state), reason, " +
		"if(stopped, last_seen_ms, since_ms) AS since, job, last_seen_ms, " +
		"if(stopped, greatest(toUInt64(state), " + strconv.Itoa(int(stoppedState)) + "), toUInt64(state)) AS severity " +
		"FROM gpus WHERE stopped OR state != 0 ORDER BY severity DESC, since, cluster, node, uuid LIMIT {limit:UInt32}", p, nil
}

// Drain runs DrainSQL: at most limit GPUs (1 … MaxDrainRows).
func Drain(ctx context.Context, s store.Store, w FleetWindow, limit int) (*DrainReport, error) {
	sql, p, err := DrainSQL(s.Database(), w, limit)
	if err != nil {
		return nil, err
	}
	r, err := s.QueryWith(ctx, sql, p)
	if err != nil {
		return nil, tooLarge(ctx, s, "drain list", err)
	}
	rep := &DrainReport{At: w.At.UTC(), GPUs: []DrainGPU{}}
	for _, row := range r.Rows {
		if len(row) != 12 {
			return nil, fmt.Errorf("drain list: %d columns, want 12", len(row))
		}
		if len(rep.GPUs) == limit {
			rep.Truncated = true
			break
		}
		g := DrainGPU{Cluster: asString(row[0]), Node: asString(row[1]), GPU: asUint(row[2]), UUID: asString(row[3]),
			Model: asString(row[4]), Action: StateName(asUint(row[6])), Reason: asString(row[7]),
			Since: time.UnixMilli(asInt(row[8])).UTC(), Job: asString(row[9]), Severity: asUint(row[11])}
		if asUint(row[5]) == 1 {
			last := time.UnixMilli(asInt(row[10])).UTC()
			g.Reason = fmt.Sprintf("no sample since %s (%s before %s); last state %s",
				last.Format(time.RFC3339), w.At.Sub(last).Truncate(time.Second), w.At.UTC().Format(time.RFC3339), g.Action)
			if r := asString(row[7]); r != "" {
				g.Reason += ": " + r
			}
			g.Action = ActionStoppedReporting
		}
		rep.GPUs = append(rep.GPUs, g)
	}
	return rep, nil
}

// asInt reads an integer column, which arrives as int64, uint64, float64 or text by the engine's
// transport (64-bit integers are quoted in JSON).
func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case uint64:
		return int64(x)
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// JobWindow is what the interruptions report looks at: jobs whose last sample is in [From, To)
// and more than Idle before At (so they ended), and fatal events on their GPUs up to Within
// before that.
type JobWindow struct {
	From, To, At time.Time
	Within       time.Duration // default DefaultWithin
	Idle         time.Duration // default DefaultSilent
	Filters      []Filter      // on the jobs' GPUs
}

// CauseCount is one row of the root-cause table.
type CauseCount struct {
	Category      string  `json:"category"`
	Interruptions uint64  `json:"interruptions"`
	Share         float64 `json:"share"` // of all interruptions, 0 … 1
	// The example is the category's most recent interruption: the job and the event blamed.
	ExampleCluster string    `json:"example_cluster"`
	ExampleJob     string    `json:"example_job"`
	ExampleEvent   string    `json:"example_event"` // kind and code: xid 79, ecc_dbe, fell_off_bus
	ExampleUUID    string    `json:"example_uuid"`
	ExampleAt      time.Time `json:"example_at"`
}

// InterruptionReport is the root-cause table of the jobs that ended in a window.
type InterruptionReport struct {
	From          time.Time    `json:"from"`
	To            time.Time    `json:"to"`
	JobsEnded     uint64       `json:"jobs_ended"`
	Interruptions uint64       `json:"interruptions"`
	Causes        []CauseCount `json:"causes"`
}

// InterruptionsSQL finds the jobs that ended in the window, the fatal events on their GPUs from
// Within before each job's last sample to EventAfterLastSample after it, blames each job on its
// earliest such event and counts jobs by that event's cause category. A fatal event: an XID whose
// catalog action is not IGNORE (a code the catalog lacks is category unknown), an uncorrectable
// ECC error (gpu_memory) or a GPU fallen off the bus (pcie_bus).
func InterruptionsSQL(db string, w JobWindow) (string, store.Params, error) {
	if w.Within == 0 {
		w.Within = DefaultWithin
	}
	if w.Idle == 0 {
		w.Idle = DefaultSilent
	}
	switch {
	case !w.From.Before(w.To):
		return "", nil, invalid("from", "%s is not before to %s", w.From.UTC().Format(time.RFC3339), w.To.UTC().Format(time.RFC3339))
	case w.To.Sub(w.From) > MaxLookback:
		return "", nil, invalid("since", "%s: at most %s", w.To.Sub(w.From), MaxLookback)
	case w.Within < time.Second || w.Within > MaxWithin || w.Within%time.Second != 0:
		return "", nil, invalid("within", "%s: whole seconds, between 1s and %s", w.Within, MaxWithin)
	case w.Idle < time.Minute || w.Idle > 24*time.Hour:
		return "", nil, invalid("idle", "%s: between 1m and 24h", w.Idle)
	}
	if err := checkGPUFilters(w.Filters); err != nil {
		return "", nil, err
	}
	p := store.Params{
		"from_ms":  strconv.FormatInt(w.From.UnixMilli(), 10),
		"to_ms":    strconv.FormatInt(w.To.UnixMilli(), 10),
		"idle_ms":  strconv.FormatInt(w.At.Add(-w.Idle).UnixMilli(), 10),
		"within_s": strconv.FormatInt(int64(w.Within/time.Second), 10),
		"after_s":  strconv.FormatInt(int64(EventAfterLastSample/time.Second), 10),
	}
	ms := func(name string) string { return "fromUnixTimestamp64Milli({" + name + ":Int64}, 'UTC')" }
	gpuWhere := append([]string{
		"t >= toStartOfHour(" + ms("from_ms") + " - toIntervalSecond({within_s:UInt32}))", "t < " + ms("to_ms"), "job_id != ''",
		"(cluster, toString(job_id)) IN (SELECT cluster, job_id FROM ended)",
	}, bindFilters(w.Filters, p)...)
	sql := "WITH " +
		"ended AS (SELECT cluster, job_id, min(first_seen) AS started, max(last_seen) AS ended_at FROM " + store.Table(db, schema.Jobs) +
		" GROUP BY cluster, job_id HAVING ended_at >= " + ms("from_ms") + " AND ended_at < " + ms("to_ms") + " AND ended_at < " + ms("idle_ms") + "), " +
		"jgpus AS (SELECT DISTINCT cluster, toString(job_id) AS job_id, toString(uuid) AS uuid FROM " + store.Table(db, schema.GPU1h) +
		" WHERE " + strings.Join(gpuWhere, " AND ") + "), " +
		"catalog AS (SELECT toUInt64(code) AS code, any(toString(category)) AS category, any(toString(immediate_action)) AS action, 1 AS known FROM " +
		store.Table(db, schema.XIDCatalog) + " GROUP BY code), " +
		"fatal AS (SELECT e.cluster AS cluster, toString(e.uuid) AS uuid, e.time AS time, " +
		"if(e.kind = 'xid', concat('xid ', toString(e.code)), toString(e.kind)) AS event, " +
		"multiIf(e.kind = 'ecc_dbe', 'gpu_memory', e.kind = 'fell_off_bus', 'pcie_bus', c.known = 1, c.category, 'unknown') AS category " +
		"FROM " + store.Table(db, schema.GPUEvents) + " AS e LEFT JOIN catalog AS c ON e.code = c.code " +
		"WHERE e.kind IN ('xid', 'ecc_dbe', 'fell_off_bus') AND (e.kind != 'xid' OR c.action != 'IGNORE') " +
		"AND e.time >= " + ms("from_ms") + " - toIntervalSecond({within_s:UInt32}) AND e.time < " + ms("to_ms") + " + toIntervalSecond({after_s:UInt32})), " +
		"blamed AS (SELECT j.cluster AS cluster, j.job_id AS job_id, any(en.ended_at) AS ended_at, " +
		"argMin((f.category, f.event, f.uuid, f.time), (f.time, f.uuid)) AS cause " +
		"FROM jgpus AS j INNER JOIN ended AS en ON j.cluster = en.cluster AND j.job_id = en.job_id " +
		"INNER JOIN fatal AS f ON j.cluster = f.cluster AND j.uuid = f.uuid " +
		"WHERE f.time >= en.ended_at - toIntervalSecond({within_s:UInt32}) AND f.time <= en.ended_at + toIntervalSecond({after_s:UInt32}) " +
		"AND f.time >= en.started GROUP BY j.cluster, j.job_id) " +
		"SELECT category, n, tupleElement(ex, 1), tupleElement(ex, 2), tupleElement(ex, 3), tupleElement(ex, 4), tupleElement(ex, 5), " +
		"(SELECT uniqExact(cluster, job_id) FROM jgpus) FROM (" +
		"SELECT tupleElement(cause, 1) AS category, count() AS n, argMax((cluster, job_id, tupleElement(cause, 2), tupleElement(cause, 3), " +
		"toUnixTimestamp64Milli(tupleElement(cause, 4))), (ended_at, cluster, job_id)) AS ex FROM blamed GROUP BY category " +
		// An empty table still says how many jobs ended.
		"UNION ALL SELECT '', toUInt64(0), ('', '', '', '', toInt64(0)) WHERE (SELECT count() FROM blamed) = 0" +
		") ORDER BY n DESC, category"
	return sql, p, nil
}

// Interruptions runs InterruptionsSQL.
func Interruptions(ctx context.Context, s store.Store, w JobWindow) (*InterruptionReport, error) {
	sql, p, err := InterruptionsSQL(s.Database(), w)
	if err != nil {
		return nil, err
	}
	r, err := s.QueryWith(ctx, sql, p)
	if err != nil {
		return nil, tooLarge(ctx, s, "interruptions", err)
	}
	rep := &InterruptionReport{From: w.From.UTC(), To: w.To.UTC(), Causes: []CauseCount{}}
	for _, row := range r.Rows {
		if len(row) != 8 {
			return nil, fmt.Errorf("interruptions: %d columns, want 8", len(row))
		}
		rep.JobsEnded = asUint(row[7])
		n := asUint(row[1])
		if n == 0 {
			continue
		}
		rep.Interruptions += n
		rep.Causes = append(rep.Causes, CauseCount{Category: asString(row[0]), Interruptions: n,
			ExampleCluster: asString(row[2]), ExampleJob: asString(row[3]), ExampleEvent: asString(row[4]),
			ExampleUUID: asString(row[5]), ExampleAt: time.UnixMilli(asInt(row[6])).UTC()})
	}
	for i := range rep.Causes {
		rep.Causes[i].Share = float64(rep.Causes[i].Interruptions) / float64(rep.Interruptions)
	}
	return rep, nil
}
