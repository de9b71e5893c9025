package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Injection is one explicit failure: fault on GPU GPU of node Node, After the node's first sample,
// for tests and demos. Its precursor (SBE climb, heat, PCIe replays) starts at the fault's usual
// lead or at the first sample, whichever is later.
type Injection struct {
	Node   string // as NewNode names it: node-00003
	GPU    int
	Fault  Fault
	XID    uint64 // of FaultXID
	After  time.Duration
	Repair time.Duration // 0: the node's repair time
}

// InjectSyntax is what ParseInjection takes, as errors and --help say it.
const InjectSyntax = "node=NODE,gpu=N,fault=FAULT[,after=DURATION][,repair=DURATION] with FAULT one of xid<N> (e.g. xid79), dbe, remap_failure, sram, fell_off_bus, thermal"

// ParseInjections parses injections separated by ';'.
func ParseInjections(s string) ([]Injection, error) {
	var out []Injection
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" && strings.Contains(s, ";") {
			continue // a trailing or doubled separator
		}
		in, err := ParseInjection(part)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// ParseInjection parses one injection, "node=node-00003,gpu=2,fault=xid79,after=5s": fields in
// any order, node (a name or a node number), gpu and fault required, after (default 0) and repair
// (default the node's) optional. Errors name the field.
func ParseInjection(s string) (Injection, error) {
	var in Injection
	s = strings.TrimSpace(s)
	if s == "" {
		return in, fmt.Errorf("empty injection: want %s", InjectSyntax)
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return in, fmt.Errorf("%q: want field=value (%s)", kv, InjectSyntax)
		}
		if seen[k] {
			return in, fmt.Errorf("field %s given twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "node":
			in.Node, err = parseNode(v)
		case "gpu":
			n, perr := strconv.ParseUint(v, 10, 8)
			if perr != nil || n >= 64 {
				err = fmt.Errorf("%q is not a GPU index 0..63", v)
			}
			in.GPU = int(n)
		case "fault":
			in.Fault, in.XID, err = parseFault(v)
		case "after":
			in.After, err = parseDuration(v, true)
		case "repair":
			in.Repair, err = parseDuration(v, false)
		default:
			return in, fmt.Errorf("unknown field %q (want node, gpu, fault, after, repair)", k)
		}
		if err != nil {
			return in, fmt.Errorf("field %s: %w", k, err)
		}
	}
	for _, k := range []string{"node", "gpu", "fault"} {
		if !seen[k] {
			return in, fmt.Errorf("field %s missing (%s)", k, InjectSyntax)
		}
	}
	return in, nil
}

// parseNode takes a node's name or its number (3 is node-00003).
func parseNode(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("empty: want a node name (node-00003) or number (3)")
	}
	if n, err := strconv.ParseUint(v, 10, 31); err == nil {
		return nodeName(int(n)), nil
	}
	if strings.ContainsAny(v, " \t;=,") {
		return "", fmt.Errorf("%q is not a node name (node-00003) or number (3)", v)
	}
	return v, nil
}

func nodeName(idx int) string { return fmt.Sprintf("node-%05d", idx) }

func parseFault(v string) (Fault, uint64, error) {
	if code, ok := strings.CutPrefix(v, "xid"); ok {
		n, err := strconv.ParseUint(code, 10, 16)
		if err != nil || n == 0 || code[0] == '+' {
			return 0, 0, fmt.Errorf("%q: want xid and a code 1..65535, e.g. xid79", v)
		}
		return FaultXID, n, nil
	}
	for f, name := range faultNames {
		if name != "" && name != "xid" && v == name {
			return Fault(f), 0, nil
		}
	}
	return 0, 0, fmt.Errorf("%q is not a fault: want xid<N> (e.g. xid79), dbe, remap_failure, sram, fell_off_bus or thermal", v)
}

func parseDuration(v string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration such as 30s or 5m", v)
	case d < 0 || (d == 0 && !zeroOK):
		return 0, fmt.Errorf("%q: must be positive", v)
	}
	return d, nil
}

// String is the injection as ParseInjection takes it.
func (in Injection) String() string {
	fault := in.Fault.String()
	if in.Fault == FaultXID {
		fault = fmt.Sprintf("xid%d", in.XID)
	}
	s := fmt.Sprintf("node=%s,gpu=%d,fault=%s,after=%s", in.Node, in.GPU, fault, in.After)
	if in.Repair > 0 {
		s += ",repair=" + in.Repair.String()
	}
	return s
}
