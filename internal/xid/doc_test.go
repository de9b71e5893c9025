package xid

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

var docPath = filepath.Join("..", "..", "docs", "xid.md")

// categoryTable is docs/xid.md's list of codes by category, from the catalog.
func categoryTable() string {
	var b strings.Builder
	b.WriteString("| category | codes |\n|---|---|\n")
	for _, c := range Categories {
		var codes []string
		for _, e := range All() {
			if e.Category == c {
				codes = append(codes, fmt.Sprint(e.Code))
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", c, strings.Join(codes, ", "))
	}
	return b.String()
}

// docs/xid.md's category table is the catalog's.
func TestDocCategories(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	const open, end = "<!-- categories -->\n", "<!-- /categories -->"
	i, j := strings.Index(string(doc), open), strings.Index(string(doc), end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q … %q markers", docPath, open, end)
	}
	want := categoryTable()
	if *update {
		doc = []byte(string(doc[:i+len(open)]) + want + string(doc[j:]))
		if err := os.WriteFile(docPath, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		j = i + len(open) + len(want)
	}
	if got := string(doc[i+len(open) : j]); got != want {
		t.Errorf("%s's category table differs from catalog.csv (go test ./internal/xid -run DocCategories -update)", docPath)
	}
}

// The SQL examples of docs/xid.md run after a migrate and answer from the catalog: XID 48 and an
// unknown code in the first, by category.
func TestDocSQLRuns(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		for _, s := range strings.Split(m[1], ";") {
			if s = strings.TrimSpace(s); s != "" {
				stmts = append(stmts, s)
			}
		}
	}
	if len(stmts) != 3 {
		t.Fatalf("%d SQL statements in %s, want 3", len(stmts), docPath)
	}
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-time.Hour).Format("2006-01-02 15:04:05.000")
	if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code) VALUES "+
		"('%[2]s', 'c1', 'n1', 0, 'GPU-a', 'xid', 48), ('%[2]s', 'c1', 'n1', 1, 'GPU-b', 'xid', 48), ('%[2]s', 'c1', 'n2', 0, 'GPU-c', 'xid', 9999)",
		store.Table(s.Database(), schema.GPUEvents), now)); err != nil {
		t.Fatal(err)
	}
	var answers []string
	for _, stmt := range stmts {
		r, err := s.Query(ctx, strings.ReplaceAll(stmt, "gpufleet.", s.Database()+"."))
		if err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		answers = append(answers, fmt.Sprint(r.Rows))
	}
	for i, want := range []string{
		"[[gpu_memory 48 ROBUST_CHANNEL_GPU_ECC_DBE WORKFLOW_XID_48 2 2 1] [not_in_catalog 9999   1 1 1]]",
		"gpu_memory 2]]",
		"[[c1 n1 GPU-",
	} {
		if !strings.Contains(answers[i], want) {
			t.Errorf("statement %d answered %s, want it to hold %s", i+1, answers[i], want)
		}
	}
}
