package gpumetric

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/schema.md")

// metricsTable is the Markdown table of every metric, as docs/schema.md shows it.
func metricsTable() string {
	var b strings.Builder
	b.WriteString("| column | kind | type | unit | NVML source | plausible | meaning |\n|---|---|---|---|---|---|---|\n")
	for _, m := range All() {
		rng := ""
		if m.Kind == Gauge {
			rng = fmt.Sprintf("%g … %g", m.Plausible.Lo, m.Plausible.Hi)
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | `%s` | %s | %s |\n", m.Column, m.Kind, m.Kind.ColumnType(), m.Unit, m.Source, rng, m.Help)
	}
	return b.String()
}

// docs/schema.md documents every metric column exactly as the registry defines it.
func TestSchemaDocListsEveryMetric(t *testing.T) {
	const path = "../../docs/schema.md"
	const begin, end = "<!-- metrics:begin -->\n", "<!-- metrics:end -->"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q … %q markers", path, begin, end)
	}
	want := s[:i+len(begin)] + metricsTable() + s[j:]
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if s != want {
		t.Errorf("%s's metric table is out of date with the registry: go test ./internal/gpumetric -run SchemaDoc -update", path)
	}
}
