package xid

import (
	"slices"
	"strings"
	"testing"
)

// Facts read off NVIDIA's page, one per kind of row: a change to catalog.csv that breaks one is a
// transcription error, or NVIDIA changed the page (then change this table with it).
func TestCatalogFacts(t *testing.T) {
	for _, c := range []struct {
		code                    uint64
		mnemonic                string
		immediate               Action
		investigatory, category string
		a100, h100, b100, gb200 bool
		used                    bool
	}{
		{8, "ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", RestartApp, "CONTACT_SUPPORT", CategoryGPU, true, true, true, true, true},
		{13, "ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY", RestartApp, "WORKFLOW_XID_13", CategoryApplication, true, true, true, true, true},
		{16, "ROBUST_CHANNEL_VBLANK_CALLBACK_TIMEOUT", ContactSupport, "CONTACT_SUPPORT", CategoryUnused, false, false, false, false, false},
		{31, "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", RestartApp, "WORKFLOW_XID_31", CategoryApplication, true, true, true, true, true},
		{45, "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL", WorkflowXid45, "Solo: RESTART_FM Not Solo: IGNORE (follow other Xid)", CategoryApplication, true, true, true, true, true},
		{48, "ROBUST_CHANNEL_GPU_ECC_DBE", WorkflowXid48, "WORKFLOW_XID_48", CategoryGPUMemory, true, true, true, true, true},
		{54, "SILENT_RUNNING_PWR_REDUCED_CLOCKING", CheckMechanicals, "CONTACT_SUPPORT", CategoryPowerMechanical, true, true, true, false, true},
		{63, "INFOROM_DRAM_RETIREMENT_EVENT", Ignore, "IGNORE", CategoryGPUMemory, true, true, true, true, true},
		{64, "INFOROM_DRAM_RETIREMENT_FAILURE", ResetGPU, "CONTACT_SUPPORT", CategoryGPUMemory, true, true, true, true, true},
		{74, "NVLINK_ERROR", WorkflowNVLinkErr, "CONTACT_SUPPORT", CategoryNVLink, true, true, false, false, true},
		{78, "VGPU_START_ERROR", UpdateSWFW, "UPDATE_SWFW", CategoryDriverFirmware, true, true, true, true, true},
		{79, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", RestartBM, "CONTACT_SUPPORT", CategoryPCIe, true, true, true, true, true},
		{93, "INFOROM_ERASE_LIMIT_EXCEEDED", Ignore, "CONTACT_SUPPORT", CategoryDriverFirmware, true, false, false, false, true},
		{94, "ROBUST_CHANNEL_CONTAINED_ERROR", RestartApp, "IGNORE (sympathetic)", CategoryGPUMemory, true, true, true, true, true},
		{95, "ROBUST_CHANNEL_UNCONTAINED_ERROR", ResetGPU, "IGNORE (sympathetic)", CategoryGPUMemory, true, true, true, true, true},
		{108, "NVLINK_REMOTE_TRANSLATION_ERROR", Ignore, "XID_137_FLOW", CategoryUnused, true, true, true, true, false},
		{119, "GSP_RPC_TIMEOUT", ResetGPU, "INVESTIGATE_SW", CategorySystemProcessor, true, true, true, true, true},
		{121, "C2C_ERROR", Ignore, "CONTACT_SUPPORT", CategoryNVLink, false, false, false, true, true},
		{142, "ROBUST_CHANNEL_NVENC3_ERROR", ContactSupport, "", CategoryGPU, false, false, false, true, true},
		{149, "NVLINK_NETIR_ERROR", WorkflowNVLink5Err, "WORKFLOW_NVLINK5_ERR", CategoryNVLink, false, false, true, true, true},
		{151, "ROBUST_CHANNEL_KEY_ROTATION_ERROR", RestartVM, "CONTACT_SUPPORT", CategoryDriverFirmware, false, true, true, true, true},
		{152, "ROBUST_CHANNEL_DLA_SMMU_ERROR", Ignore, "CONTACT_SUPPORT", CategoryUnused, false, false, false, false, false},
		{154, "GPU_RECOVERY_ACTION_CHANGED", FollowXid154, "N/A Informational only regarding another Xid", CategoryInformational, true, true, true, true, true},
		{159, "ROBUST_CHANNEL_CHI_NON_DATA_ERROR", CheckUVM, "SYMPATHETIC_REPORT_SOLO", CategoryNVLink, false, false, true, true, true},
		{163, "PSHC_DISENGAGED", Unspecified, "", CategoryPowerMechanical, false, false, true, true, true},
		{167, "PCIE_FATAL_TIMEOUT", Unspecified, "", CategoryPCIe, false, true, true, true, true},
		{171, "UNCORRECTABLE_DRAM_ERROR", Unspecified, "", CategoryGPUMemory, true, true, true, true, true},
		{172, "UNCORRECTABLE_SRAM_ERROR", Unspecified, "", CategorySRAM, true, true, true, true, true},
	} {
		e, ok := Lookup(c.code)
		if !ok {
			t.Errorf("Lookup(%d): not found", c.code)
			continue
		}
		if e.Mnemonic != c.mnemonic || e.Immediate != c.immediate || e.Investigatory != c.investigatory || e.Category != c.category ||
			e.A100 != c.a100 || e.H100 != c.h100 || e.B100 != c.b100 || e.GB200 != c.gb200 || e.Used() != c.used {
			t.Errorf("Xid %d = %+v (used %v), want %+v", c.code, e, e.Used(), c)
		}
	}
}

// The driver gates and triggers the page gives, including the irregular rows: 16 and 108 with an
// extra cell, the power-smoothing rows whose guidance sits where a bucket would.
func TestCatalogText(t *testing.T) {
	for _, c := range []struct {
		code          uint64
		gate, trigger string // trigger: a substring
	}{
		{13, "", "out-of-bounds error"},
		{16, "N/A; Unused", ""},
		{48, "CUDA 12.7; GPU driver R565", "uncorrectable error occurs on the GPU"},
		{79, "CUDA 12.7; GPU driver R565", "PCI Express"},
		{109, "CUDA 12.7; GPU driver R570", ""},
		{119, "", "GSP core"},
		{143, "CUDA 12.9; GPU driver R575", ""},
		{154, "", `"Node Reboot Required"`},
		{158, "yes; support with Xid introduction", ""},
		{159, "yes; support with Xid introduction", "C2C link-connected"},
		{163, "", "No GPU reset required."},
	} {
		e, _ := Lookup(c.code)
		if e.DriverGate != c.gate || !strings.Contains(e.Trigger, c.trigger) || (c.trigger == "" && e.Trigger != "") {
			t.Errorf("Xid %d: gate %q trigger %q, want gate %q and a trigger holding %q", c.code, e.DriverGate, e.Trigger, c.gate, c.trigger)
		}
	}
}

// Every code from 1 to the last the page lists is present (the page skips none), in order; every
// bucket is a declared Action and every category a declared one, "unused" exactly where Used is false.
func TestCatalogComplete(t *testing.T) {
	all := All()
	if len(all) != 172 {
		t.Fatalf("%d entries, want the page's 172", len(all))
	}
	for i, e := range all {
		if e.Code != uint32(i+1) {
			t.Fatalf("entry %d has code %d, want %d", i, e.Code, i+1)
		}
		if !slices.Contains(Actions, e.Immediate) {
			t.Errorf("Xid %d: immediate %q is no Action constant", e.Code, e.Immediate)
		}
		if !slices.Contains(Categories, e.Category) || (e.Category == CategoryUnused) == e.Used() {
			t.Errorf("Xid %d: category %q with Used() %v", e.Code, e.Category, e.Used())
		}
	}
	for _, code := range []uint64{0, 173, 1<<32 + 79} {
		if e, ok := Lookup(code); ok {
			t.Errorf("Lookup(%d) = %+v, want not found", code, e)
		}
	}
}

// parse refuses each kind of bad catalog, naming what is wrong, rather than loading a partial one.
func TestParseRejects(t *testing.T) {
	head := strings.Join(header, ",") + "\n"
	good := "79,M,D,YES,YES,YES,YES,RESTART_BM,CONTACT_SUPPORT,,pcie_bus,t\n"
	if _, err := parse([]byte(head + good)); err != nil {
		t.Fatalf("the good row: %v", err)
	}
	for _, c := range []struct{ name, csv, want string }{
		{"empty", "", "header"},
		{"no rows", head, "no rows"},
		{"header order", strings.Replace(head, "a100,h100", "h100,a100", 1) + good, "header"},
		{"field count", head + "79,M,D,YES,YES,YES,YES,RESTART_BM,CONTACT_SUPPORT,,pcie_bus\n", "wrong number of fields"},
		{"code", head + strings.Replace(good, "79", "x79", 1), `code "x79"`},
		{"code too big", head + strings.Replace(good, "79", "4294967296", 1), "code"},
		{"yes/no", head + strings.Replace(good, "YES,YES,YES,YES", "YES,Yes,YES,YES", 1), "h100"},
		{"action", head + strings.Replace(good, "RESTART_BM", "REBOOT", 1), "immediate_action"},
		{"category", head + strings.Replace(good, "pcie_bus", "pcie", 1), "category"},
		{"unused but used", head + strings.Replace(good, "pcie_bus", "unused", 1), "Used()"},
		{"used but unused", head + "1,M,Unused,NO,NO,NO,NO,CONTACT_SUPPORT,,,gpu,\n", "Used()"},
		{"no mnemonic", head + strings.Replace(good, ",M,", ",,", 1), "mnemonic"},
		{"line break", head + strings.Replace(good, ",t\n", ",\"a\nb\"\n", 1), "line break"},
		{"duplicate", head + good + good, "codes must increase"},
		{"decreasing", head + good + strings.Replace(good, "79", "78", 1), "codes must increase"},
	} {
		t.Run(c.name, func(t *testing.T) {
			es, err := parse([]byte(c.csv))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parse = %d entries, %v; want an error about %q", len(es), err, c.want)
			}
		})
	}
}

// The embedded file is what init loaded: parsing it again gives the same rows.
func TestEmbeddedParses(t *testing.T) {
	es, err := parse(catalogCSV)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(es, All()) {
		t.Fatal("parse(catalog.csv) differs from All()")
	}
}
