package sim

import (
	"strings"
	"testing"
	"time"
)

func TestParseInjection(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Injection
		err  string // substring of the error; "" for none
	}{
		{in: "node=node-00003,gpu=2,fault=xid79,after=5s", want: Injection{Node: "node-00003", GPU: 2, Fault: FaultXID, XID: 79, After: 5 * time.Second}},
		{in: " fault=dbe , gpu=0 , node=3 ", want: Injection{Node: "node-00003", GPU: 0, Fault: FaultDBE}},
		{in: "node=node-00012,gpu=7,fault=remap_failure,after=1m30s,repair=10m",
			want: Injection{Node: "node-00012", GPU: 7, Fault: FaultRemapFailure, After: 90 * time.Second, Repair: 10 * time.Minute}},
		{in: "node=0,gpu=63,fault=fell_off_bus,after=0s", want: Injection{Node: "node-00000", GPU: 63, Fault: FaultFellOffBus}},
		{in: "node=1,gpu=1,fault=thermal", want: Injection{Node: "node-00001", GPU: 1, Fault: FaultThermal}},
		{in: "node=1,gpu=1,fault=sram", want: Injection{Node: "node-00001", GPU: 1, Fault: FaultSRAM}},
		{in: "node=1,gpu=1,fault=xid65535", want: Injection{Node: "node-00001", GPU: 1, Fault: FaultXID, XID: 65535}},

		{in: "", err: "empty injection"},
		{in: "node=1,gpu=1", err: "field fault missing"},
		{in: "gpu=1,fault=dbe", err: "field node missing"},
		{in: "node=1,fault=dbe", err: "field gpu missing"},
		{in: "node=1,gpu=x,fault=dbe", err: `field gpu: "x" is not a GPU index 0..63`},
		{in: "node=1,gpu=64,fault=dbe", err: `field gpu: "64" is not a GPU index`},
		{in: "node=1,gpu=-1,fault=dbe", err: "field gpu:"},
		{in: "node=,gpu=1,fault=dbe", err: "field node: empty"},
		{in: "node=a b,gpu=1,fault=dbe", err: "field node:"},
		{in: "node=1,gpu=1,fault=ecc", err: `field fault: "ecc" is not a fault`},
		{in: "node=1,gpu=1,fault=xid", err: "field fault: \"xid\": want xid and a code"},
		{in: "node=1,gpu=1,fault=xid0", err: "field fault:"},
		{in: "node=1,gpu=1,fault=xid70000", err: "field fault:"},
		{in: "node=1,gpu=1,fault=xid-3", err: "field fault:"},
		{in: "node=1,gpu=1,fault=dbe,after=soon", err: `field after: "soon" is not a duration`},
		{in: "node=1,gpu=1,fault=dbe,after=-5s", err: "field after: \"-5s\": must be positive"},
		{in: "node=1,gpu=1,fault=dbe,repair=0s", err: "field repair: \"0s\": must be positive"},
		{in: "node=1,gpu=1,gpu=2,fault=dbe", err: "field gpu given twice"},
		{in: "node=1,gpu=1,fault=dbe,when=5s", err: `unknown field "when"`},
		{in: "node=1,gpu=1,fault=dbe,5s", err: `"5s": want field=value`},
		{in: "node=1,gpu=1,fault=dbe,,", err: "want field=value"},
	} {
		got, err := ParseInjection(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseInjection(%q): %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseInjection(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseInjection(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.err == "":
			if back, err := ParseInjection(got.String()); err != nil || back != got {
				t.Errorf("%q → %q → %+v, %v: String does not round-trip", tc.in, got.String(), back, err)
			}
		}
	}
}

func TestParseInjections(t *testing.T) {
	got, err := ParseInjections("node=1,gpu=2,fault=dbe;node=2,gpu=0,fault=xid79,after=1m;")
	if err != nil || len(got) != 2 || got[0].Fault != FaultDBE || got[1].XID != 79 || got[1].After != time.Minute {
		t.Errorf("two injections: %+v, %v", got, err)
	}
	if _, err := ParseInjections("node=1,gpu=2,fault=dbe;node=2,gpu=0"); err == nil || !strings.Contains(err.Error(), "field fault missing") {
		t.Errorf("the second injection's error: %v", err)
	}
	if _, err := ParseInjections(""); err == nil {
		t.Error("an empty list parsed")
	}
}

// FuzzParseInjection: no input panics, and what parses prints back to itself.
func FuzzParseInjection(f *testing.F) {
	for _, s := range []string{"node=node-00003,gpu=2,fault=xid79,after=5s", "node=3,gpu=0,fault=dbe,repair=1h",
		"node=1,gpu=1,fault=thermal", "fault=sram,gpu=9,node=x", "node=1,gpu=1,fault=xid", "node=,gpu=,fault=", "=,=,=", ",,,", "node=1,gpu=1,fault=remap_failure,after=-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in, err := ParseInjection(s)
		if err != nil {
			if err.Error() == "" {
				t.Errorf("%q: an empty error", s)
			}
			return
		}
		if in.Node == "" || in.GPU < 0 || in.GPU > 63 || in.Fault == 0 || in.After < 0 || in.Repair < 0 {
			t.Errorf("%q parsed to an impossible %+v", s, in)
		}
		back, err := ParseInjection(in.String())
		if err != nil || back != in {
			t.Errorf("%q → %+v → %q → %+v, %v", s, in, in.String(), back, err)
		}
	})
}
