package health

import (
	"fmt"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/xid"
)

// Kind is how a rule is evaluated.
type Kind uint8

const (
	// XIDBucket fires on an Xid event whose catalog entry's immediate action is one of Buckets.
	XIDBucket Kind = iota + 1
	// XIDUnknown fires on an Xid event the catalog does not know, or marks unused.
	XIDUnknown
	// Flag fires while a 0/1 gauge column reads 1.
	Flag
	// NonZero fires while a volatile counter column reads above 0.
	NonZero
	// Event fires on an event of EventKind and holds while the GPU sends no readings.
	Event
	// Rate fires when the sum of counter columns grew faster than Threshold per minute over the
	// evaluator's window, and clears after a window at half of it or under (hysteresis).
	Rate
	// Share fires when a nanosecond counter grew by more than Threshold (a fraction) of the wall
	// time over the window, and clears after a window at half of it or under.
	Share
	// Fleet is derived by the fleet's reports from the stored samples, never on the node.
	Fleet
)

// Rule is one row of the health rules table.
type Rule struct {
	// Name identifies the rule in findings and docs.
	Name string
	Kind Kind
	// Columns are the catalogue metric columns (internal/gpumetric) the rule reads.
	Columns []string
	// Buckets are the catalog's immediate actions an XIDBucket rule covers.
	Buckets []xid.Action
	// EventKind is the gpu_events kind an Event rule fires on.
	EventKind string
	// Threshold is a Rate rule's per-minute limit or a Share rule's fraction of wall time.
	Threshold float64
	// WhileBelow, for a Share rule, makes it fire only while the first of these two gauge columns
	// reads below the second at the window's end (and not when either is absent).
	WhileBelow []string
	// State is what the rule asks for; NoChange rules (the Xids NVIDIA says to ignore) set none.
	State    State
	NoChange bool
	// Reason is why, as the finding and the health event's message say it after the reading.
	Reason string
	// Clears says what ends the condition, honestly: some only end with an agent restart.
	Clears string
}

// The clearing texts the Xid rules share.
const (
	clearsXIDHold  = "the same Xid not seen again for the hold (default 10m), the job on the GPU changing (with job attribution), a GPU reset or driver reload (ecc_sbe_volatile, ecc_dbe_volatile or energy_mj going backwards), or an agent restart"
	clearsXIDReset = "a GPU reset or driver reload, seen as ecc_sbe_volatile, ecc_dbe_volatile or energy_mj going backwards (NVML counts them since the driver loaded; if a reset on your driver keeps them, only the agent restart after the reset clears it), or an agent restart"
	clearsRestart  = "only an agent restart (the reboot restarts it); the health event row stays in " + schema.GPUEvents
)

// Rules is the health rules table, the one place the rules are defined: the evaluator applies
// it, docs/health.md is generated from it. Rows are in severity order within each source.
var Rules = []Rule{
	{Name: "xid_ignore", Kind: XIDBucket, Buckets: []xid.Action{xid.Ignore}, NoChange: true,
		Reason: "NVIDIA's catalog says no action is needed (e.g. Xid 63: a row remap, which remap_pending reports)", Clears: "-"},
	{Name: "xid_follow_other", Kind: XIDBucket, Buckets: []xid.Action{xid.WorkflowXid45, xid.FollowXid154}, NoChange: true,
		Reason: "follows the Xid it accompanies (45: preemptive cleanup after other errors; 154: the recovery action another Xid asks for), which sets the state itself", Clears: "-"},
	{Name: "xid_unspecified", Kind: XIDBucket, Buckets: []xid.Action{xid.Unspecified, xid.CheckUVM, xid.UpdateSWFW}, State: Degraded,
		Reason: "an Xid whose action the catalog leaves open (no bucket; CHECK_UVM: reset only if UVM or vGPU is in use; UPDATE_SWFW: update driver or firmware)", Clears: clearsXIDHold},
	{Name: "xid_unknown", Kind: XIDUnknown, State: Degraded,
		Reason: "an Xid NVIDIA's catalog does not list, or marks unused for A100, H100, B100/B200 and GB200", Clears: clearsXIDHold},
	{Name: "xid_restart_app", Kind: XIDBucket, Buckets: []xid.Action{xid.RestartApp}, State: RestartApp,
		Reason: "the application on the GPU must restart", Clears: clearsXIDHold},
	{Name: "xid_reset_gpu", Kind: XIDBucket, Buckets: []xid.Action{xid.ResetGPU, xid.WorkflowXid48, xid.WorkflowNVLinkErr, xid.WorkflowNVLink5Err}, State: ResetGPU,
		Reason: "the GPU needs a reset (RESET_GPU; Xid 48, a double-bit ECC error; Xid 74 and 144-150, NVLink errors, whose registers would refine the action)", Clears: clearsXIDReset},
	{Name: "xid_reboot_node", Kind: XIDBucket, Buckets: []xid.Action{xid.RestartBM, xid.RestartVM}, State: RebootNode,
		Reason: "the node must reboot (RESTART_BM; RESTART_VM, the VM owning the GPU)", Clears: clearsRestart},
	{Name: "xid_service", Kind: XIDBucket, Buckets: []xid.Action{xid.ContactSupport, xid.CheckMechanicals}, State: Service,
		Reason: "the GPU needs service (CONTACT_SUPPORT) or its seating and connections checked (CHECK_MECHANICALS)", Clears: clearsRestart},

	{Name: "ecc_uncorrectable", Kind: NonZero, Columns: []string{"ecc_dbe_volatile"}, State: ResetGPU,
		Reason: "uncorrectable ECC errors since the driver loaded or the GPU was reset", Clears: "ecc_dbe_volatile back to 0 (a driver reload zeroes it; NVML counts volatile errors since the driver loaded)"},
	{Name: "remap_pending", Kind: Flag, Columns: []string{"remap_pending"}, State: ResetGPU,
		Reason: "rows were remapped that only a GPU reset applies", Clears: "remap_pending back to 0 (the reset applied the remap)"},
	{Name: "retired_pages_pending", Kind: Flag, Columns: []string{"retired_pages_pending"}, State: ResetGPU,
		Reason: "pages wait to be retired at the next GPU reset or driver reload", Clears: "retired_pages_pending back to 0"},
	{Name: "remap_failure", Kind: Flag, Columns: []string{"remap_failure"}, State: Service,
		Reason: "a row remap failed: the GPU is out of spare rows", Clears: "remap_failure back to 0 (in practice: the GPU was replaced)"},
	{Name: "fell_off_bus", Kind: Event, EventKind: "fell_off_bus", State: RebootNode,
		Reason: "the GPU fell off the bus (NVML: GPU is lost)", Clears: "the GPU sending readings again; the NVML source stops reading a lost GPU, so in practice the agent restart after the reboot"},

	// DCGM's hardware limits: "CRC errors only matter at rates of 100+ per second" (6000/min).
	{Name: "nvlink_crc_rate", Kind: Rate, Columns: []string{"nvlink_crc_flit_errors", "nvlink_crc_data_errors"}, Threshold: 6000, State: Degraded,
		Reason: "NVLink CRC errors (flit + data, all links) above DCGM's 100 per second", Clears: "a window with the rate at or under half the threshold"},
	// DCGM flags any replay; one a second allows a link's occasional replay without flapping.
	{Name: "nvlink_replay_rate", Kind: Rate, Columns: []string{"nvlink_replay_errors"}, Threshold: 60, State: Degraded,
		Reason: "NVLink replays (all links) above one per second", Clears: "a window with the rate at or under half the threshold"},
	{Name: "thermal_violation", Kind: Share, Columns: []string{"viol_thermal_ns"}, Threshold: 0.10, State: Degraded,
		Reason: "clocks held down by a thermal limit for over a tenth of the window: cooling", Clears: "a window at or under half the share"},
	// Power capping is normal under full load: an H100 training at its board limit is held down by
	// it most of the time. Only a GPU held down nearly all the time by a limit below the board's
	// maximum (lowered by hand or by the platform's power management) is worth a look.
	{Name: "power_violation", Kind: Share, Columns: []string{"viol_power_ns"}, Threshold: 0.90, WhileBelow: []string{"power_limit_w", "power_max_w"}, State: Degraded,
		Reason: "clocks held down for over 90 % of the window by a power limit below the board's maximum", Clears: "a window at or under half the share, or the limit back at the board's maximum"},

	{Name: "stopped_reporting", Kind: Fleet, Columns: []string{"(newest sample)"}, State: Degraded,
		Reason: "the fleet's reports (query --report health) derive it from the GPU's newest sample: no agent can report its own silence", Clears: "a new sample from the GPU"},
}

// RuleNamed returns the rule named name; ok is false for none.
func RuleNamed(name string) (Rule, bool) {
	for _, r := range Rules {
		if r.Name == name {
			return r, true
		}
	}
	return Rule{}, false
}

// Reads says what the rule reads, as docs/health.md lists it.
func (r Rule) Reads() string {
	switch r.Kind {
	case XIDBucket:
		var bs []string
		for _, b := range r.Buckets {
			if b == xid.Unspecified {
				bs = append(bs, "(none)")
				continue
			}
			bs = append(bs, string(b))
		}
		return "Xid event; catalog immediate action " + strings.Join(bs, ", ")
	case XIDUnknown:
		return "Xid event; code not in the catalog, or not Used()"
	case Event:
		return "`" + r.EventKind + "` event"
	}
	reads := "`" + strings.Join(r.Columns, "` + `") + "`"
	if len(r.WhileBelow) == 2 {
		reads += fmt.Sprintf(", `%s`, `%s`", r.WhileBelow[0], r.WhileBelow[1])
	}
	return reads
}

// Condition says when the rule fires, as docs/health.md lists it.
func (r Rule) Condition(window time.Duration) string {
	switch r.Kind {
	case XIDBucket, XIDUnknown, Event:
		return "arrives"
	case Flag:
		return "= 1"
	case NonZero:
		return "> 0"
	case Rate:
		return fmt.Sprintf("grows > %g per minute over the window (%s)", r.Threshold, window)
	case Share:
		c := fmt.Sprintf("grows > %g %% of wall time over the window (%s)", r.Threshold*100, window)
		if len(r.WhileBelow) == 2 {
			c += fmt.Sprintf(", while %s < %s", r.WhileBelow[0], r.WhileBelow[1])
		}
		return c
	case Fleet:
		return "no sample for longer than the report's threshold"
	}
	return ""
}

// Where says which side applies the rule.
func (r Rule) Where() string {
	if r.Kind == Fleet {
		return "fleet"
	}
	return "agent, health-check"
}

// StateText is the rule's resulting state as docs/health.md shows it.
func (r Rule) StateText() string {
	if r.NoChange {
		return "no change"
	}
	return fmt.Sprintf("%s (%d)", r.State, r.State)
}

// MarkdownTable is the rules table as docs/health.md shows it.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| rule | reads | fires when | state | why | cleared by | where |\n|---|---|---|---|---|---|---|\n")
	for _, r := range Rules {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s |\n", r.Name, r.Reads(), r.Condition(DefaultWindow),
			r.StateText(), r.Reason, r.Clears, r.Where())
	}
	return b.String()
}

// xidRule is the rule an Xid code falls under: by the catalog's immediate action, or xid_unknown.
func xidRule(code uint64) (int, xid.Entry, bool) {
	e, ok := xid.Lookup(code)
	for i, r := range Rules {
		switch {
		case r.Kind == XIDUnknown && (!ok || !e.Used()):
			return i, e, ok
		case r.Kind == XIDBucket && ok && e.Used():
			for _, b := range r.Buckets {
				if b == e.Immediate {
					return i, e, ok
				}
			}
		}
	}
	return -1, e, ok // an action no rule covers: TestEveryXidActionHasARule keeps this from happening
}
