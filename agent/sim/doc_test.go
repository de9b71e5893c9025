package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs/simulator.md's rates table says what sim.Causes holds: each cause's name, count and rate,
// and the snapshot it is divided by.
func TestFailureDocMatchesCauses(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "simulator.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range Causes {
		row := fmt.Sprintf("| `%s` | %s", c.Name, c.Paper)
		i := strings.Index(doc, row)
		if i < 0 {
			t.Errorf("docs/simulator.md has no row %q", row)
			continue
		}
		line := doc[i : i+strings.Index(doc[i:], "\n")]
		for _, want := range []string{fmt.Sprintf("| %d |", c.Interruptions), fmt.Sprintf("| %.2f |", c.PerGPUHour()*1e6)} {
			if !strings.Contains(line, want) {
				t.Errorf("%s's row %q lacks %q", c.Name, line, want)
			}
		}
	}
	if want := fmt.Sprintf("| %.2f |", TotalPerGPUHour()*1e6); !strings.Contains(doc, want) {
		t.Errorf("docs/simulator.md lacks the total %q", want)
	}
	if !strings.Contains(doc, "21,233,664 GPU-hours") || SnapshotGPUHours != 21233664 {
		t.Errorf("snapshot GPU-hours: %d in the code; the doc must say 21,233,664", SnapshotGPUHours)
	}
}
