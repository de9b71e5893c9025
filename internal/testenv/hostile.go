package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/store"
)

// SQLCase is one statement of query/guard/testdata/hostile.sql.
type SQLCase struct {
	SQL    string
	Refuse bool // the read paths must refuse it; otherwise it runs
}

// HostileSQL reads the statements every read path is tried with, for database db and a directory
// dir that holds canary.txt (CanaryDir).
func HostileSQL(t testing.TB, db, dir string) []SQLCase {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "query/guard/testdata/hostile.sql"))
	if err != nil {
		t.Fatal(err)
	}
	var out []SQLCase
	for _, block := range strings.Split(string(data), "\n=== ")[1:] {
		head, body, _ := strings.Cut(block, "\n")
		body = strings.NewReplacer("{db}", db, "{dir}", dir).Replace(strings.TrimSuffix(body, "\n"))
		out = append(out, SQLCase{SQL: body, Refuse: head == "refuse"})
	}
	if len(out) < 30 {
		t.Fatalf("hostile.sql has %d statements", len(out))
	}
	return out
}

// CanaryDir is a fresh directory with canary.txt in it.
func CanaryDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "canary.txt"), []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Snapshot describes what a hostile statement must leave as it was: every table of every
// database but system's, and the names, sizes and contents of the files in dirs (not recursive).
func Snapshot(t testing.TB, st store.Store, dirs ...string) string {
	t.Helper()
	r, err := st.Query(context.Background(), "SELECT database, name, engine FROM system.tables "+
		"WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name")
	if err != nil {
		t.Fatalf("snapshot tables: %v", err)
	}
	var b strings.Builder
	for _, row := range r.Rows {
		fmt.Fprintln(&b, row...)
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatalf("snapshot %s: %v", d, err)
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "%s/%s", d, n)
			if data, err := os.ReadFile(filepath.Join(d, n)); err == nil && len(data) < 4096 {
				fmt.Fprintf(&b, " %q", data)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}
