package benchtable

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/bench.md")

// The golden table of testdata/bench.txt: packages from the pkg lines, -N suffixes gone, the zero
// ns/op of benchmarks that report their own figures left out, NaN and Inf skipped, a goal's ratio
// either way round, and a | in a unit escaped.
func TestMarkdownGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "bench.txt"))
	if err != nil {
		t.Fatal(err)
	}
	figs, err := Parse(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := Markdown(&got, figs, Goals); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "bench.md")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("table differs from %s (go test ./internal/benchtable -update):\n%s", path, got.String())
	}
}

func TestGoals(t *testing.T) {
	for _, c := range []struct {
		fig       Figure
		ratio     string
		met, none bool
	}{
		{Figure{Bench: "BenchmarkDetect", Unit: "p99_drain_ms", Value: 1500}, "0.75", true, false},
		{Figure{Bench: "BenchmarkDetect", Unit: "p99_drain_ms", Value: 2500}, "1.25", false, false},
		{Figure{Bench: "BenchmarkEndToEnd", Unit: "fraction_of_chdb", Value: 0.45}, "2.00", false, false},
		{Figure{Bench: "BenchmarkRollupCost/small", Unit: "insert_cost_vs_raw", Value: 1.5}, "1.00", true, false},
		{Figure{Bench: "BenchmarkDetect", Unit: "xids", Value: 48}, "", false, true},
		{Figure{Bench: "BenchmarkDashboardPanels/fleet/Utilisation/A", Unit: "backend_ms", Value: 250}, "0.25", true, false},
		{Figure{Bench: "BenchmarkDashboardPanelsX", Unit: "backend_ms", Value: 250}, "", false, true},
	} {
		var b bytes.Buffer
		if err := Markdown(&b, []Figure{c.fig}, Goals); err != nil {
			t.Fatal(err)
		}
		row := strings.Split(strings.TrimSpace(b.String()), "\n")[2]
		cells := strings.Split(row, " | ")
		ratio, met := cells[5], strings.TrimSuffix(cells[6], " |")
		switch {
		case c.none && (ratio != "" || met != ""):
			t.Errorf("%s %s: ratio %q met %q, want no goal", c.fig.Bench, c.fig.Unit, ratio, met)
		case !c.none && (ratio != c.ratio || (met == "yes") != c.met):
			t.Errorf("%s %s = %v: ratio %q met %q, want %s met=%v", c.fig.Bench, c.fig.Unit, c.fig.Value, ratio, met, c.ratio, c.met)
		}
	}
}

// Any input parses without a panic, within MaxFigures, into rows that keep the table's shape.
func FuzzParse(f *testing.F) {
	if in, err := os.ReadFile(filepath.Join("testdata", "bench.txt")); err == nil {
		f.Add(in)
	}
	f.Add([]byte("BenchmarkX-8 1 1 a/op 2 b|c/op\npkg: |x|\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		figs, _ := Parse(bytes.NewReader(in))
		if len(figs) > MaxFigures {
			t.Fatalf("%d figures", len(figs))
		}
		var b bytes.Buffer
		if err := Markdown(&b, figs, Goals); err != nil {
			t.Fatal(err)
		}
		for i, row := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if n := strings.Count(strings.ReplaceAll(row, `\|`, ""), "|"); n != 8 {
				t.Fatalf("row %d has %d cell borders: %q", i, n, row)
			}
		}
	})
}
