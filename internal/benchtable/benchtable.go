// Package benchtable reads `go test -bench` output and writes one markdown table of every figure
// the benchmarks report, beside the goal the issues set for it where there is one and the figure's
// ratio to that limit. The raw output stays the input of benchstat; the table is for people.
package benchtable

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Figure is one value one benchmark reported.
type Figure struct {
	Pkg, Bench, Unit string
	Value            float64
}

// Goal is a limit on a figure: at most Limit (AtMost) or at least Limit.
type Goal struct {
	Bench, Unit string // Bench matches the benchmark's name without the -N suffix: path.Match, or "Name/*" every sub-benchmark of Name
	Limit       float64
	AtMost      bool
	Source      string // where the goal is set
}

// Goals are the limits the issues set, for the figures that have one.
var Goals = []Goal{
	{"BenchmarkEndToEnd", "fraction_of_chdb", 0.9, false, "issue 17: end to end near the engine's own insert rate"},
	{"BenchmarkEndToEnd", "insert_cost_vs_raw", 1.5, true, "issue 17: rollups add at most 50 % to the raw insert"},
	{"BenchmarkRollupCost/*", "insert_cost_vs_raw", 1.5, true, "issue 17: rollups add at most 50 % to the raw insert"},
	{"BenchmarkBytesPerValue", "bytes/value", 0.5, true, "issue 17: half a byte per value"},
	{"BenchmarkDetect", "p99_drain_ms", 2000, true, "issue 16: Xid to drain list, p99 under 2 s"},
	{"BenchmarkDashboardPanels/*", "backend_ms", 1000, true, "issue 13: every panel under 1 s through the backend"},
	{"BenchmarkOTelVsGpufleet", "bytes_ratio", 1, false, "issue 17: the OpenTelemetry layout side by side (ratio > 1: gpufleet smaller)"},
	{"BenchmarkOTelVsGpufleet", "insert_cpu_ratio", 1, false, "issue 17: (ratio > 1: gpufleet cheaper)"},
	{"BenchmarkOTelVsGpufleet", "query_ratio", 1, false, "issue 17: (ratio > 1: gpufleet faster)"},
	{"BenchmarkSampleEncode/reused-batch", "allocs/op", 1, true, "issue 17: no allocation per cycle but the message"},
}

// module is this repository's module path, left out of package names in the table.
const module = "github.com/gpufleet/gpufleet"

// line is a benchmark result: name, iterations, then value-unit pairs.
var line = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+(.*)$`)

// MaxFigures bounds what Parse keeps, whatever the input.
const MaxFigures = 100_000

// Parse reads go test -bench output: "pkg:" lines name the package of the results after them.
// Lines it does not know are skipped, as benchstat skips them.
func Parse(r io.Reader) ([]Figure, error) {
	var out []Figure
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		if p, ok := strings.CutPrefix(text, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		name := trimProcs(m[1])
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			if f[i+1] == "ns/op" && v == 0 {
				continue // benchmarks that report their own figures zero ns/op
			}
			if len(out) == MaxFigures {
				return out, fmt.Errorf("benchtable: more than %d figures", MaxFigures)
			}
			out = append(out, Figure{Pkg: pkg, Bench: name, Unit: f[i+1], Value: v})
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("benchtable: read: %w", err)
	}
	return out, nil
}

// trimProcs drops the -GOMAXPROCS suffix go test adds to a benchmark's name.
func trimProcs(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// goalOf is the goal for f, if any.
func goalOf(f Figure, goals []Goal) (Goal, bool) {
	for _, g := range goals {
		if g.Unit != f.Unit {
			continue
		}
		// "Name/*" is every sub-benchmark of Name, at any depth; otherwise path.Match.
		if prefix, ok := strings.CutSuffix(g.Bench, "/*"); ok && strings.HasPrefix(f.Bench, prefix+"/") {
			return g, true
		}
		if ok, _ := path.Match(g.Bench, f.Bench); ok {
			return g, true
		}
	}
	return Goal{}, false
}

// Markdown writes figs as one table: package, benchmark, figure, unit, goal, ratio to the goal's
// limit (figure ÷ limit for an upper bound, limit ÷ figure for a lower one: above 1 misses) and
// whether it is met.
func Markdown(w io.Writer, figs []Figure, goals []Goal) error {
	var b strings.Builder
	b.WriteString("| package | benchmark | figure | unit | goal | ratio to limit | met |\n|---|---|---|---|---|---|---|\n")
	for _, f := range figs {
		goal, ratio, met := "", "", ""
		if g, ok := goalOf(f, goals); ok {
			op := "≥"
			r := g.Limit / f.Value
			if g.AtMost {
				op, r = "≤", f.Value/g.Limit
			}
			goal = fmt.Sprintf("%s %s (%s)", op, format(g.Limit), g.Source)
			ratio = fmt.Sprintf("%.2f", r)
			met = "yes"
			if r > 1 {
				met = "**no**"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(strings.TrimPrefix(f.Pkg, module+"/")), cell(f.Bench), format(f.Value), cell(f.Unit), goal, ratio, met)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func format(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// cell keeps a value from breaking the table.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
