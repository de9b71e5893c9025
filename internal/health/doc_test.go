package health

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated rules table in docs/health.md")

// docs/health.md shows the rules table exactly as Rules defines it: the Go table is the one home
// of the rules, the document is generated from it (go test ./internal/health -run HealthDoc -update).
func TestHealthDocListsEveryRule(t *testing.T) {
	const path = "../../docs/health.md"
	const begin, end = "<!-- rules:begin -->\n", "<!-- rules:end -->"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q … %q markers", path, begin, end)
	}
	want := s[:i+len(begin)] + MarkdownTable() + s[j:]
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if s != want {
		t.Errorf("%s's rules table is out of date with health.Rules: go test ./internal/health -run HealthDoc -update", path)
	}
	for _, st := range States {
		if !strings.Contains(s, "| "+st.String()+" | "+string(rune('0'+st))+" |") {
			t.Errorf("%s's states table lacks the row for %s (%d)", path, st, st)
		}
	}
}
