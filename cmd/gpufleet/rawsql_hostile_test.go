package main_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The hostile statements through `gpufleet query --sql` on a migrated chDB directory: a refused
// one exits 2 with one line, a harmless one prints rows, and afterwards the tables (read back by
// the CLI itself), the canary and the directories are as they were.
func TestQuerySQLHostile(t *testing.T) {
	lib := testenv.LibCHDB(t)
	env := []string{"GPUFLEET_LIBCHDB=" + lib}
	data := t.TempDir()
	dsn := "chdb://" + data
	if r := run(t, env, "migrate", "--clickhouse", dsn); r.code != 0 {
		t.Fatalf("migrate: %s", r.stderr)
	}
	dir := testenv.CanaryDir(t)
	snapshot := func() string {
		r := run(t, env, "query", "--clickhouse", dsn, "--sql",
			"SELECT database, name FROM system.tables WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name")
		if r.code != 0 {
			t.Fatalf("list tables: %s", r.stderr)
		}
		var b strings.Builder
		b.WriteString(r.stdout)
		for _, d := range []string{dir, ".", data} {
			ents, err := os.ReadDir(d)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".insert-") {
					continue
				}
				names = append(names, e.Name())
			}
			sort.Strings(names)
			b.WriteString(strings.Join(names, " ") + "\n")
		}
		canary, err := os.ReadFile(filepath.Join(dir, "canary.txt"))
		if err != nil {
			t.Fatal(err)
		}
		b.Write(canary)
		return b.String()
	}
	before := snapshot()
	if !strings.Contains(before, `"gpu_samples"`) {
		t.Fatalf("the snapshot does not list the tables:\n%s", before)
	}
	for _, c := range testenv.HostileSQL(t, "gpufleet", dir) {
		if c.SQL == "" {
			continue // an empty --sql is no --sql: the summary
		}
		r := run(t, env, "query", "--clickhouse", dsn, "--sql", c.SQL)
		switch {
		case c.Refuse && r.code != 2:
			t.Errorf("%q: exit %d (%s%s), want 2", c.SQL, r.code, r.stdout, r.stderr)
		case c.Refuse && strings.Count(strings.TrimSpace(r.stderr), "\n") > 1:
			t.Errorf("%q: more than one line:\n%s", c.SQL, r.stderr)
		case !c.Refuse && (r.code != 0 || !strings.Contains(r.stdout, `"rows"`)):
			t.Errorf("%q: exit %d (%s%s), want rows", c.SQL, r.code, r.stdout, r.stderr)
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("after the hostile statements:\n%s\nwas\n%s", after, before)
	}
}
