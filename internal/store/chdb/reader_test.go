package chdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

func openReader(t *testing.T, db string, lim store.Limits) *chdb.Store {
	t.Helper()
	r, err := chdb.OpenReader(testenv.DataDir(t), db, testenv.LibCHDB(t), lim)
	if err != nil {
		t.Fatalf("open reader: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestReaderCannotWrite(t *testing.T) {
	w := testenv.CHDB(t)
	ctx := context.Background()
	if err := w.Exec(ctx, "CREATE TABLE "+store.Table(w.Database(), "t")+" (a Int8) ENGINE = MergeTree ORDER BY a"); err != nil {
		t.Fatal(err)
	}
	r := openReader(t, w.Database(), store.Limits{})
	if err := r.Exec(ctx, "SELECT 1"); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("reader Exec: %v, want ErrReadOnly", err)
	}
	b := &store.Block{Columns: []store.Column{&store.ColUInt8{ColName: "a", V: []uint8{1}}}}
	if err := r.Insert(ctx, "t", b, ""); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("reader Insert: %v, want ErrReadOnly", err)
	}
	// The engine itself refuses, whatever reaches it through the query path.
	for _, q := range []string{
		"CREATE TABLE " + store.Table(w.Database(), "pwned") + " (a Int8) ENGINE = Memory",
		"INSERT INTO " + store.Table(w.Database(), "t") + " VALUES (2)",
		"DROP TABLE " + store.Table(w.Database(), "t"),
		"SET readonly = 0",
		"SET max_execution_time = 0",
		"SELECT * FROM file('/etc/hostname', 'LineAsString')",
		"SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')",
	} {
		if _, err := r.Query(ctx, q); err == nil || !strings.Contains(err.Error(), "READONLY") {
			t.Errorf("reader ran %q: %v, want the engine's READONLY refusal", q, err)
		}
	}
	// Unqualified names resolve in the reader's database.
	if res, err := r.Query(ctx, "SELECT count() FROM t"); err != nil || res.Rows[0][0] != uint64(0) {
		t.Errorf("count in the reader's database: %v %v", res, err)
	}
	// The writers' session is untouched by the reader's.
	if err := w.Insert(ctx, "t", b, ""); err != nil {
		t.Fatalf("writer after a reader opened: %v", err)
	}
	if res, err := r.Query(ctx, "SELECT count() FROM t"); err != nil || res.Rows[0][0] != uint64(1) {
		t.Errorf("reader sees the writer's row: %v %v", res, err)
	}
}

func TestReaderLimits(t *testing.T) {
	w := testenv.CHDB(t)
	r := openReader(t, w.Database(), store.Limits{MaxResultRows: 5, MaxExecutionTime: time.Second, MaxRowsToRead: 1 << 62})
	ctx := context.Background()
	if _, err := r.Query(ctx, "SELECT number FROM numbers(10)"); err == nil || !strings.Contains(err.Error(), "TOO_MANY_ROWS") {
		t.Errorf("10 rows past max_result_rows 5: %v", err)
	}
	if res, err := r.Query(ctx, "SELECT number FROM numbers(5)"); err != nil || len(res.Rows) != 5 {
		t.Errorf("5 rows: %v %v", res, err)
	}
	if _, err := r.Query(ctx, "SELECT count() FROM numbers(1000000000000) WHERE sleepEachRow(0) = 0"); err == nil || !strings.Contains(err.Error(), "TIMEOUT_EXCEEDED") {
		t.Errorf("endless query: %v, want max_execution_time", err)
	}
}

func TestReaderCancelKillsTheQuery(t *testing.T) {
	w := testenv.CHDB(t)
	r := openReader(t, w.Database(), store.Limits{MaxExecutionTime: time.Hour, MaxRowsToRead: 1 << 62})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.Query(ctx, "SELECT count() FROM numbers(1000000000000) WHERE sleepEachRow(0) = 0")
		errc <- err
	}()
	// Cancel once the engine runs it.
	for {
		res, err := w.Query(context.Background(), "SELECT count() FROM system.processes WHERE query LIKE '%sleepEachRow(0) = 0%' AND query NOT LIKE '%system.processes%'")
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows[0][0] == uint64(1) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled query: %v, want context.Canceled", err)
	}
	// And the reader works on.
	if _, err := r.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

func TestReaderCreatesNothing(t *testing.T) {
	w := testenv.CHDB(t)
	if _, err := chdb.OpenReader(testenv.DataDir(t), w.Database()+"_missing", testenv.LibCHDB(t), store.Limits{}); !errors.Is(err, store.ErrNoSchema) {
		t.Errorf("missing database: %v, want ErrNoSchema", err)
	}
	res, err := w.Query(context.Background(), "SELECT count() FROM system.databases WHERE name = '"+w.Database()+"_missing'")
	if err != nil || res.Rows[0][0] != uint64(0) {
		t.Errorf("the missing database was created: %v %v", res, err)
	}
	dir := filepath.Join(t.TempDir(), "typo")
	if _, err := chdb.OpenReader(dir, "gpufleet", testenv.LibCHDB(t), store.Limits{}); err == nil {
		t.Error("a reader opened a directory that does not exist")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the reader created %s", dir)
	}
}

func TestParseSelect(t *testing.T) {
	w := testenv.CHDB(t)
	ctx := context.Background()
	canon, tree, err := w.ParseSelect(ctx, "select {a:Int64} + 1 from numbers(2) -- c", store.Params{"a": "5"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(canon, "SELECT {a:Int64} + 1") || !strings.Contains(tree, "Function numbers") || !strings.HasPrefix(tree, "SelectWithUnionQuery") {
		t.Errorf("canonical %q tree %q", canon, tree)
	}
	for _, q := range []string{
		"SELECT 1; DROP TABLE x",
		"SELECT 1 INTO OUTFILE 'x'",
		"SELECT 1 FORMAT CSV",
		"INSERT INTO t VALUES (1)",
		"CREATE TABLE x (a Int8) ENGINE = Memory",
		"SELECT (",
	} {
		if _, _, err := w.ParseSelect(ctx, q, nil); err == nil {
			t.Errorf("ParseSelect(%q) accepted it", q)
		}
	}
}

// A statement cut short by a limit must not leak its partial output into the next one.
func TestReaderAfterRefusal(t *testing.T) {
	w := testenv.CHDB(t)
	r := openReader(t, w.Database(), store.Limits{MaxResultRows: 5})
	ctx := context.Background()
	if _, err := r.Query(ctx, "SELECT number FROM numbers(10)"); err == nil {
		t.Fatal("10 rows past max_result_rows 5 were returned")
	}
	res, err := r.Query(ctx, "SELECT number FROM numbers(3)")
	if err != nil || len(res.Rows) != 3 {
		t.Fatalf("next query: %v %v", res, err)
	}
}
