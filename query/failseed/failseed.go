// Package failseed writes a small fleet with a known failure history into gpu_samples and
// gpu_events, for the tests of the failure reports (health, drain, interruptions) on every read
// path: the query layer, the HTTP API, the Grafana plugin and the CLI. The expected answers are
// here beside the data they follow from.
package failseed

import (
	"context"
	"fmt"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// Step is the sampling interval of the seeded GPUs.
const Step = 10 * time.Second

// gpu is one seeded GPU: where it is, the jobs on it by time and its health events.
type gpu struct {
	cluster, node, model string
	index                uint8
	// from, to: samples every Step in [at+from, at+to).
	from, to time.Duration
	jobs     []segment
	health   []event
	events   []event // xid, ecc_dbe, fell_off_bus
}

type segment struct {
	from time.Duration // offset from at; until the next segment's from
	job  string
}

type event struct {
	at      time.Duration
	kind    string
	code    uint64
	message string
}

func (g gpu) uuid() string { return fmt.Sprintf("GPU-%s-%d", g.node, g.index) }

func (g gpu) jobAt(d time.Duration) string {
	job := ""
	for _, s := range g.jobs {
		if d >= s.from {
			job = s.job
		}
	}
	return job
}

const m = time.Minute

func h(at time.Duration, state uint64, reason string) event {
	return event{at: at, kind: "health", code: state, message: reason}
}

// fleet: 8 GPUs of two clusters seen in the last week, one decommissioned 8 days ago.
var fleet = []gpu{
	{cluster: "east", node: "e-0", model: "H100", index: 0, from: -30 * m, to: 0,
		jobs:   []segment{{-30 * m, "j-a"}, {-20 * m, "j-e"}},
		health: []event{h(-30*m, 0, "agent start")}},
	{cluster: "east", node: "e-0", model: "H100", index: 1, from: -30 * m, to: 0,
		jobs:   []segment{{-30 * m, "j-a"}, {-20 * m, ""}},
		health: []event{h(-30*m, 0, "agent start"), h(-20*m, 1, "ecc sbe rising")},
		events: []event{{at: -20*m - 30*time.Second, kind: "xid", code: 79}}},
	{cluster: "east", node: "e-0", model: "H100", index: 2, from: -30 * m, to: 0,
		jobs: []segment{{-30 * m, "j-b"}, {-15 * m, ""}},
		// The agent restarted at -5m and said the state again: since stays -15m.
		health: []event{h(-30*m, 0, "agent start"), h(-15*m, 3, "xid 95"), h(-5*m, 3, "xid 95, after agent restart")},
		events: []event{{at: -16 * m, kind: "xid", code: 43}, {at: -15*m + 5*time.Second, kind: "xid", code: 48}}},
	{cluster: "east", node: "e-0", model: "H100", index: 3, from: -30 * m, to: 0,
		jobs:   []segment{{-30 * m, "j-c"}, {-25 * m, ""}},
		health: []event{h(-25*m, 5, "row remap failure")},
		// IGNORE in the catalog: j-c ended without an interruption.
		events: []event{{at: -25*m - 20*time.Second, kind: "xid", code: 43}}},
	{cluster: "east", node: "e-1", model: "H100", index: 0, from: -30 * m, to: -10 * m, // stopped reporting
		jobs:   []segment{{-30 * m, "j-i"}},
		events: []event{{at: -10*m - 5*time.Second, kind: "fell_off_bus"}}},
	{cluster: "east", node: "e-1", model: "H100", index: 1, from: -30 * m, to: 0,
		jobs:   []segment{{-30 * m, "j-d"}, {-8 * m, ""}},
		health: []event{h(-30*m, 0, "agent start"), h(-8*m, 2, "xid 999")},
		events: []event{{at: -9 * m, kind: "xid", code: 999}}}, // not in the catalog: unknown
	{cluster: "west", node: "w-0", model: "A100", index: 0, from: -30 * m, to: 0,
		jobs:   []segment{{-30 * m, "j-f"}, {-12 * m, "j-w"}},
		health: []event{h(-30*m, 0, "agent start"), h(-12*m, 4, "xid 79")},
		events: []event{{at: -12*m - time.Second, kind: "xid", code: 13}}},
	{cluster: "west", node: "w-0", model: "A100", index: 1, from: -30 * m, to: -90 * time.Second, // silent 90 s: still reporting
		jobs: []segment{{-30 * m, "j-g"}, {-14 * m, ""}},
		// An event after the report's instant is not seen; a DBE 6 minutes before j-g ended is too early.
		health: []event{h(time.Minute, 5, "the future")},
		events: []event{{at: -20 * m, kind: "ecc_dbe"}}},
	{cluster: "east", node: "d-0", model: "H100", index: 0, from: -8*24*time.Hour - 10*m, to: -8 * 24 * time.Hour, // decommissioned
		health: []event{h(-8*24*time.Hour-10*m, 5, "sent for repair")}},
}

// Write inserts the fleet's samples (and a MIG instance's, which the reports leave out) and its
// events, as of at (a whole minute within the last days, so that no TTL has removed them).
func Write(ctx context.Context, st store.Store, at time.Time) error {
	tm := &store.ColDateTime64{ColName: "time"}
	cluster, node, uuid, parent := &store.ColString{ColName: "cluster"}, &store.ColString{ColName: "node"},
		&store.ColString{ColName: "uuid"}, &store.ColString{ColName: "parent_uuid"}
	model, job := &store.ColString{ColName: "model"}, &store.ColString{ColName: "job_id"}
	index := &store.ColUInt8{ColName: "gpu"}
	util := &store.ColNullFloat32{ColName: "gpu_util"}
	add := func(g gpu, t time.Duration, u, p string, i uint8) {
		tm.V = append(tm.V, at.Add(t).UnixMilli())
		cluster.V, node.V, uuid.V, parent.V = append(cluster.V, g.cluster), append(node.V, g.node), append(uuid.V, u), append(parent.V, p)
		model.V, job.V, index.V = append(model.V, g.model), append(job.V, g.jobAt(t)), append(index.V, i)
		util.Append(50, false)
	}
	for _, g := range fleet {
		for t := g.from; t < g.to; t += Step {
			add(g, t, g.uuid(), "", g.index)
			if g.node == "e-0" && g.index == 0 {
				add(g, t, "MIG-e-0-0", g.uuid(), 128)
			}
		}
	}
	if err := st.Insert(ctx, schema.GPUSamples, &store.Block{Columns: []store.Column{tm, cluster, node, index, uuid, parent, model, job, util}}, ""); err != nil {
		return fmt.Errorf("failseed samples: %w", err)
	}
	et := &store.ColDateTime64{ColName: "time"}
	ecl, enode, euuid := &store.ColString{ColName: "cluster"}, &store.ColString{ColName: "node"}, &store.ColString{ColName: "uuid"}
	egpu := &store.ColUInt8{ColName: "gpu"}
	kind, msg := &store.ColString{ColName: "kind"}, &store.ColString{ColName: "message"}
	code, seq := &store.ColUInt64{ColName: "code"}, &store.ColUInt64{ColName: "seq"}
	for _, g := range fleet {
		for i, e := range append(append([]event{}, g.health...), g.events...) {
			et.V = append(et.V, at.Add(e.at).UnixMilli())
			ecl.V, enode.V, euuid.V, egpu.V = append(ecl.V, g.cluster), append(enode.V, g.node), append(euuid.V, g.uuid()), append(egpu.V, g.index)
			kind.V, code.V, msg.V, seq.V = append(kind.V, e.kind), append(code.V, e.code), append(msg.V, e.message), append(seq.V, uint64(i+1))
		}
	}
	if err := st.Insert(ctx, schema.GPUEvents, &store.Block{Columns: []store.Column{et, ecl, enode, egpu, euuid, kind, code, msg, seq}}, ""); err != nil {
		return fmt.Errorf("failseed events: %w", err)
	}
	return nil
}

// LastSample is the newest sample of the GPU that stopped reporting (east/e-1/0), from at.
const LastSample = -10*m - Step

// Drain is the drain list as of at with the default look-back and threshold, one line per GPU:
// cluster node gpu uuid action since-offset job.
var Drain = []string{
	"east e-0 3 GPU-e-0-3 service -25m0s ",
	"west w-0 0 GPU-w-0-0 reboot_node -12m0s j-w",
	"east e-0 2 GPU-e-0-2 reset_gpu -15m0s ",
	"east e-1 1 GPU-e-1-1 restart_app -8m0s ",
	"east e-0 1 GPU-e-0-1 degraded -20m0s ",
	// Stopped reporting while healthy: as severe as degraded (health's stopped_reporting rule).
	"east e-1 0 GPU-e-1-0 stopped_reporting -10m10s j-i",
}

// Interruptions is the root-cause table over the hour before at (within 300 s, idle 2 m):
// category interruptions example-job example-event; of JobsEnded jobs that ended.
var Interruptions = []string{
	"pcie_bus 2 j-i fell_off_bus",
	"application 1 j-f xid 13",
	"gpu_memory 1 j-b xid 48",
	"unknown 1 j-d xid 999",
}

// JobsEnded are the jobs that ended in the hour before at: j-a … j-d, j-f, j-g, j-i (j-e and j-w
// still run).
const JobsEnded = 7

// CheckCatalog checks that the migrated Xid catalog (0021) says of the codes the fleet's events
// carry what the expected answers assume: 13 application and 43 IGNORE'd, 48 gpu_memory, 79
// pcie_bus, 999 absent (unknown).
func CheckCatalog(ctx context.Context, st store.Store) error {
	r, err := st.Query(ctx, "SELECT code, toString(immediate_action) = 'IGNORE', toString(category) FROM "+
		store.Table(st.Database(), schema.XIDCatalog)+" WHERE code IN (13, 43, 48, 79, 999) ORDER BY code")
	if err != nil {
		return fmt.Errorf("failseed catalog: %w", err)
	}
	got := fmt.Sprint(r.Rows)
	if want := "[[13 0 application] [43 1 application] [48 0 gpu_memory] [79 0 pcie_bus]]"; got != want {
		return fmt.Errorf("failseed catalog: codes 13, 43, 48, 79, 999 are %s, the expected answers assume %s", got, want)
	}
	return nil
}

// DrainLines writes a drain list as Drain is written, the since times as offsets from at.
func DrainLines(r *query.DrainReport, at time.Time) []string {
	var out []string
	for _, g := range r.GPUs {
		out = append(out, fmt.Sprintf("%s %s %d %s %s %s %s", g.Cluster, g.Node, g.GPU, g.UUID, g.Action, g.Since.Sub(at), g.Job))
	}
	return out
}

// CauseLines writes a root-cause table as Interruptions is written.
func CauseLines(r *query.InterruptionReport) []string {
	var out []string
	for _, c := range r.Causes {
		out = append(out, fmt.Sprintf("%s %d %s %s", c.Category, c.Interruptions, c.ExampleJob, c.ExampleEvent))
	}
	return out
}
