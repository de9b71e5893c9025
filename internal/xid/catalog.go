// Package xid is NVIDIA's Xid catalog as data: for each Xid code the driver can log, its mnemonic,
// description, the GPU generations it applies to, NVIDIA's resolution buckets (the immediate action
// that puts the GPU back in service and the investigatory one for a repeat) and the driver that
// reports it with an Xid 154 recovery action. The rows are catalog.csv, embedded and parsed at
// init; `gpufleet migrate` loads the same rows into ClickHouse (MigrationSQL, migration 0021) so
// that SQL joins gpu_events to them by code.
//
// Category is ours, not NVIDIA's: a cause category for an interruptions root-cause table in the
// manner of Meta's Llama 3 report (faulty GPU, HBM, SRAM, GPU system processor, NVLink, PCIe, ...).
// It was assigned per row by reading the catalog's mnemonic, description, trigger conditions and
// buckets, in this order of precedence:
//
//   - CategoryUnused: the catalog marks the code Unused, or it applies to none of A100, H100, B100
//     and GB200 (Used is false exactly for these).
//   - CategoryApplication: the trigger blames the application (13, 31, 43, 45, 137), or the
//     investigatory bucket is CHECK_APP/CUDA and nothing else is named as the culprit (11, 25, 69,
//     80; not 32, whose trigger names PCI quality, nor 37, "Driver firmware error").
//   - The unit the row names: HBM/DRAM, ECC, row remapping, contained or uncontained memory
//     errors, WPR → CategoryGPUMemory (Xid 48 too, though NVIDIA's workflow for it also covers
//     SRAM; Xid 172 says SRAM outright → CategorySRAM); PMU, SEC2, GSP micro-controllers →
//     CategorySystemProcessor; NVLink, NVLink-C2C, link training → CategoryNVLink; the PCIe link,
//     fallen off the bus, the push-buffer DMA whose trigger names PCI quality → CategoryPCIe;
//     auxiliary power and power-smoothing circuitry → CategoryPowerMechanical.
//   - The driver or firmware: "driver firmware error", "illegal access by driver", vGPU/driver
//     mismatch (UPDATE_SWFW), InfoROM wear limit, key rotation, CUDA fast path, channel retirement
//     (INVESTIGATE_SW, no unit named) → CategoryDriverFirmware; SMBPBI test messages and Xid 154 (a
//     summary of another Xid) → CategoryInformational.
//   - Otherwise a fault of a GPU engine (graphics, copy, video, JPEG, OFA) or the GPU as a whole
//     (stopped processing, timeouts, init failure, retirement of an unnamed resource) → CategoryGPU.
//
// docs/xid.md lists the assignment per code.
package xid

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Source is the page the catalog was copied from; Retrieved is the date of the copy. NVIDIA revises
// the page (new codes come with new drivers): docs/xid.md says how to update catalog.csv.
const (
	Source    = "https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html"
	Retrieved = "2026-12-02"
)

// Action is one of NVIDIA's resolution buckets for the immediate action, e.g. "RESTART_APP"; the
// page's "Fault Resolution Buckets" sheet says what each means.
type Action string

// The immediate-action buckets the catalog uses, spelled as NVIDIA spells them.
const (
	// Unspecified: the catalog gives no bucket for the code (the newest rows, 162 to 172).
	Unspecified Action = ""
	// Ignore: no action required.
	Ignore Action = "IGNORE"
	// RestartApp: restart the application; the GPU needs no reset.
	RestartApp Action = "RESTART_APP"
	// RestartVM: restart the VM owning the GPU.
	RestartVM Action = "RESTART_VM"
	// ResetGPU: reset the GPU (drain it first).
	ResetGPU Action = "RESET_GPU"
	// RestartBM: restart the bare-metal node.
	RestartBM Action = "RESTART_BM"
	// ContactSupport: contact the support organisation.
	ContactSupport Action = "CONTACT_SUPPORT"
	// CheckMechanicals: check the device's seating and connections.
	CheckMechanicals Action = "CHECK_MECHANICALS"
	// UpdateSWFW: update firmware and software.
	UpdateSWFW Action = "UPDATE_SWFW"
	// CheckUVM: reset the GPU if UVM or vGPU is in use, otherwise ignore.
	CheckUVM Action = "CHECK_UVM"
	// FollowXid154: follow the recovery action the accompanying Xid 154 reports.
	FollowXid154 Action = "XID_154"
	// WorkflowXid45: alone, restart the fabric manager; with other Xids, follow those.
	WorkflowXid45 Action = "WORKFLOW_XID_45"
	// WorkflowXid48: double-bit ECC: reset the GPU alone, drain and reset with Xid 63 or 64.
	WorkflowXid48 Action = "WORKFLOW_XID_48"
	// WorkflowNVLinkErr: decode the Xid 74 message's registers to pick the action.
	WorkflowNVLinkErr Action = "WORKFLOW_NVLINK_ERR"
	// WorkflowNVLink5Err: decode the Xid 144-150 message's IntrInfo and error status.
	WorkflowNVLink5Err Action = "WORKFLOW_NVLINK5_ERR"
)

// Actions lists every Action constant, Unspecified first.
var Actions = []Action{Unspecified, Ignore, RestartApp, RestartVM, ResetGPU, RestartBM, ContactSupport,
	CheckMechanicals, UpdateSWFW, CheckUVM, FollowXid154, WorkflowXid45, WorkflowXid48, WorkflowNVLinkErr,
	WorkflowNVLink5Err}

// Our cause categories (see the package comment for how rows were assigned).
const (
	CategoryGPU             = "gpu"                  // a GPU engine or the GPU as a whole
	CategoryGPUMemory       = "gpu_memory"           // HBM/DRAM: ECC, row remapping, retirement
	CategorySRAM            = "gpu_sram"             // on-chip SRAM
	CategorySystemProcessor = "gpu_system_processor" // GSP, PMU, SEC2 and other micro-controllers
	CategoryNVLink          = "nvlink"               // NVLink, NVLink-C2C, link training
	CategoryPCIe            = "pcie_bus"             // the PCIe link; fallen off the bus
	CategoryDriverFirmware  = "driver_firmware"      // driver, firmware, vGPU, InfoROM
	CategoryApplication     = "application"          // the application's own fault
	CategoryPowerMechanical = "power_mechanical"     // power connection, power smoothing
	CategoryInformational   = "informational"        // test messages, summaries of other Xids
	CategoryUnused          = "unused"               // Unused, or applies to no listed generation
)

// Categories lists every category constant.
var Categories = []string{CategoryGPU, CategoryGPUMemory, CategorySRAM, CategorySystemProcessor,
	CategoryNVLink, CategoryPCIe, CategoryDriverFirmware, CategoryApplication, CategoryPowerMechanical,
	CategoryInformational, CategoryUnused}

// Entry is one row of the catalog.
type Entry struct {
	Code        uint32
	Mnemonic    string
	Description string // "Unused" where NVIDIA deprecated the code or it applies to V100 or older
	// Whether the code applies to each generation (B100 stands for B100/B200).
	A100, H100, B100, GB200 bool
	// Immediate is the bucket for putting the GPU back in service; Unspecified where none is given.
	Immediate Action
	// Investigatory is the bucket, or NVIDIA's short text, for investigating a repeat.
	Investigatory string
	// DriverGate is the page's "Xid 154 linkage": the CUDA and driver release from which the code
	// also triggers an Xid 154 recovery action (e.g. "CUDA 12.7; GPU driver R565"), as the page
	// words it; empty where it says nothing.
	DriverGate string
	// Category is ours, not NVIDIA's: one of the Category constants.
	Category string
	// Trigger is the page's "Trigger Conditions": when the code is logged and what to do.
	Trigger string
}

// Used is false for the rows the catalog marks Unused and for those that apply to none of the four
// generations it lists.
func (e Entry) Used() bool {
	return e.Description != "Unused" && (e.A100 || e.H100 || e.B100 || e.GB200)
}

//go:embed catalog.csv
var catalogCSV []byte

// header is catalog.csv's first row, in order.
var header = []string{"code", "mnemonic", "description", "a100", "h100", "b100", "gb200",
	"immediate_action", "investigatory_action", "driver_gate", "category", "trigger"}

var (
	entries []Entry
	byCode  map[uint32]int
)

func init() {
	es, err := parse(catalogCSV)
	if err != nil {
		// The file is embedded: a bad one is a build defect, and TestCatalogParses names the row.
		panic("xid: " + err.Error())
	}
	entries = es
	byCode = make(map[uint32]int, len(es))
	for i, e := range es {
		byCode[e.Code] = i
	}
}

// Lookup returns the catalog's entry for an Xid code.
func Lookup(code uint64) (Entry, bool) {
	if code > uint64(^uint32(0)) {
		return Entry{}, false
	}
	i, ok := byCode[uint32(code)]
	if !ok {
		return Entry{}, false
	}
	return entries[i], true
}

// All returns every entry in code order. The slice is shared: do not modify it.
func All() []Entry { return entries }

// parse reads catalog.csv: the header, then one row per code in strictly increasing order, every
// field checked, so that a mistyped row fails the build's tests rather than a join at run time.
func parse(data []byte) ([]Entry, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = len(header)
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("catalog header: %w", err)
	}
	if strings.Join(head, ",") != strings.Join(header, ",") {
		return nil, fmt.Errorf("catalog header is %q, want %q", head, header)
	}
	var out []Entry
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		line, _ := r.FieldPos(0)
		e, err := parseRow(rec)
		if err != nil {
			return nil, fmt.Errorf("catalog line %d: %w", line, err)
		}
		if n := len(out); n > 0 && e.Code <= out[n-1].Code {
			return nil, fmt.Errorf("catalog line %d: code %d after %d: codes must increase", line, e.Code, out[n-1].Code)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("catalog has no rows")
	}
	return out, nil
}

func parseRow(rec []string) (Entry, error) {
	for i, f := range rec {
		// One line per field: the generated migration is split on lines holding only ";".
		if strings.ContainsAny(f, "\r\n") {
			return Entry{}, fmt.Errorf("%s %q: a line break in a field", header[i], f)
		}
	}
	code, err := strconv.ParseUint(rec[0], 10, 32)
	if err != nil {
		return Entry{}, fmt.Errorf("code %q: %w", rec[0], err)
	}
	e := Entry{Code: uint32(code), Mnemonic: rec[1], Description: rec[2],
		Immediate: Action(rec[7]), Investigatory: rec[8], DriverGate: rec[9], Category: rec[10], Trigger: rec[11]}
	if e.Mnemonic == "" || e.Description == "" {
		return Entry{}, fmt.Errorf("code %d: mnemonic and description are required", code)
	}
	for i, dst := range []*bool{&e.A100, &e.H100, &e.B100, &e.GB200} {
		switch rec[3+i] {
		case "YES":
			*dst = true
		case "NO":
		default:
			return Entry{}, fmt.Errorf("code %d: %s is %q, want YES or NO", code, header[3+i], rec[3+i])
		}
	}
	if !slices.Contains(Actions, e.Immediate) {
		return Entry{}, fmt.Errorf("code %d: immediate_action %q is no Action constant", code, e.Immediate)
	}
	if !slices.Contains(Categories, e.Category) {
		return Entry{}, fmt.Errorf("code %d: category %q is no Category constant", code, e.Category)
	}
	if (e.Category == CategoryUnused) != !e.Used() {
		return Entry{}, fmt.Errorf("code %d: category %q but Used() is %v: %q is for exactly the unused rows",
			code, e.Category, e.Used(), CategoryUnused)
	}
	return e, nil
}
