package query_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// reader opens a migrated database and a read-only store on it, as the read paths do.
func reader(t testing.TB) (w, r store.Store) {
	t.Helper()
	w = testenv.CHDB(t)
	if _, err := migrate.Apply(context.Background(), w, nil); err != nil {
		t.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return w, rd
}

// Every hostile statement is refused as a bad request, every harmless one runs, and neither leaves
// a table, a file or the canary changed.
func TestRunSQLHostile(t *testing.T) {
	w, r := reader(t)
	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	win := query.Window{From: time.Now().Add(-time.Hour), To: time.Now(), Interval: time.Minute}
	for _, c := range testenv.HostileSQL(t, w.Database(), dir) {
		_, err := query.RunSQL(context.Background(), r, c.SQL, win)
		switch {
		case c.Refuse && err == nil:
			t.Errorf("ran %q", c.SQL)
		case c.Refuse && !errors.Is(err, query.ErrInvalid):
			t.Errorf("%q: %v, want a bad-request error", c.SQL, err)
		case !c.Refuse && err != nil:
			t.Errorf("refused %q: %v", c.SQL, err)
		}
		if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
			t.Fatalf("after %q:\n%s\nwas\n%s", c.SQL, after, before)
		}
	}
}

// Whatever the statement, running it through RunSQL on a reader leaves the database and the files
// as they were.
func FuzzRunSQL(f *testing.F) {
	w, r := reader(f)
	for _, s := range []string{
		"SELECT 1", "SELECT 1; DROP TABLE {db}.gpu_samples", "SELECT file('/etc/hostname')",
		"SELECT * FROM (SELECT 1 SETTINGS readonly = 0)", "SELECT 'x' INTO OUTFILE 'fuzz-victim.txt'",
		"WITH a AS (SELECT 1) SELECT * FROM a", "SELECT $__timeFilter(time) FROM {db}.gpu_samples",
		"SELECT count() FROM {db}.gpu_samples WHERE node IN (SELECT node FROM system.tables)",
	} {
		f.Add(strings.ReplaceAll(s, "{db}", w.Database()))
	}
	dir := testenv.CanaryDir(f)
	before := testenv.Snapshot(f, w, dir, ".")
	win := query.Window{From: time.Now().Add(-time.Hour), To: time.Now(), Interval: time.Minute}
	f.Fuzz(func(t *testing.T, sql string) {
		_, _ = query.RunSQL(context.Background(), r, sql, win)
		if after := testenv.Snapshot(t, w, dir, "."); after != before {
			t.Fatalf("after %q:\n%s\nwas\n%s", sql, after, before)
		}
	})
}

// A raw statement whose answer is over the reader's max_result_rows is a bad request saying to ask
// for less, not a ClickHouse failure.
func TestRunSQLOverTheRowLimit(t *testing.T) {
	w := testenv.CHDB(t)
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{MaxResultRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	_, err = query.RunSQL(context.Background(), rd, "SELECT number FROM numbers(100)", query.Window{From: time.Now().Add(-time.Hour), To: time.Now()})
	if !errors.Is(err, query.ErrInvalid) || !strings.Contains(err.Error(), "more than 10 points") {
		t.Fatalf("100 rows over a limit of 10: %v", err)
	}
}
