package xid

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the generated migration")

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// The committed migration is what MigrationSQL makes of catalog.csv: an edit to the CSV without
// regenerating (or a hand edit of the SQL) fails here.
func TestMigrationIsGenerated(t *testing.T) {
	path := filepath.Join("..", "schema", "migrations", MigrationFile)
	sql := MigrationSQL()
	if *update {
		if err := os.WriteFile(path, []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/xid -run MigrationIsGenerated -update writes it)", err)
	}
	if string(want) != sql {
		t.Errorf("%s differs from MigrationSQL (go test ./internal/xid -run MigrationIsGenerated -update if catalog.csv changed)", path)
	}
}

// migrate loads every row into ClickHouse unchanged (quotes, typographic characters and all), a
// repeat of the migration after an interrupted run leaves one row per code, and gpu_events joins it
// by code, an unknown code included.
func TestMigrateLoadsCatalog(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	tbl := store.Table(s.Database(), schema.XIDCatalog)
	checkRows(ctx, t, s, tbl)

	// migrate records a version after its statements: a crash between the INSERT and the record
	// runs them all again.
	ms, err := migrate.Load(s.Database())
	if err != nil {
		t.Fatal(err)
	}
	var again []string
	for _, m := range ms {
		if fmt.Sprintf("%04d_%s.sql", m.Version, m.Name) == MigrationFile {
			again = m.Statements
		}
	}
	if len(again) != 3 {
		t.Fatalf("%s splits into %d statements, want 3 (CREATE, TRUNCATE, INSERT)", MigrationFile, len(again))
	}
	for _, stmt := range again {
		if err := s.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	checkRows(ctx, t, s, tbl)

	ev := store.Table(s.Database(), schema.GPUEvents)
	now := time.Now().UTC().Format("2006-01-02 15:04:05.000")
	if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, kind, code, message) VALUES "+
		"('%s', 'c1', 'n1', 0, 'GPU-a', 'xid', 79, 'fell off'), ('%s', 'c1', 'n1', 1, 'GPU-b', 'xid', 9999, 'new')", ev, now, now)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, fmt.Sprintf("SELECT e.code, c.mnemonic, c.immediate_action, c.category FROM %s AS e "+
		"LEFT JOIN %s AS c ON c.code = e.code ORDER BY e.code", ev, tbl))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(r.Rows)
	if want := "[[79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS RESTART_BM pcie_bus] [9999   ]]"; got != want {
		t.Errorf("join = %s, want %s", got, want)
	}
}

func checkRows(ctx context.Context, t *testing.T, s store.Store, tbl string) {
	t.Helper()
	r, err := s.Query(ctx, "SELECT toString(code), mnemonic, description, toString(a100), toString(h100), toString(b100), toString(gb200), "+
		"toString(immediate_action), investigatory_action, driver_gate, toString(category), trigger FROM "+tbl+" ORDER BY code")
	if err != nil {
		t.Fatal(err)
	}
	all := All()
	if len(r.Rows) != len(all) {
		t.Fatalf("%s has %d rows, want %d", tbl, len(r.Rows), len(all))
	}
	for i, e := range all {
		want := []string{fmt.Sprint(e.Code), e.Mnemonic, e.Description, fmt.Sprint(e.A100), fmt.Sprint(e.H100), fmt.Sprint(e.B100),
			fmt.Sprint(e.GB200), string(e.Immediate), e.Investigatory, e.DriverGate, e.Category, e.Trigger}
		for j, w := range want {
			if g := r.Rows[i][j]; g != w {
				t.Errorf("row %d column %s = %q, want %q", e.Code, header[j], g, w)
			}
		}
	}
}

// sqlString survives what catalog text may hold: quotes, backslashes, the {db} placeholder that
// migrate replaces, a would-be statement separator, and non-ASCII.
func TestSQLStringRoundTrips(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	// The statements go through migrate's own split and substitution, as the migration's do.
	weird := `it's a \ back'\'slash "quoted" {db}.x -- not a comment ; “curly” – ®`
	stmt := "SELECT " + sqlString(weird)
	if strings.Contains(stmt, "{db}") {
		t.Fatalf("%s still holds the placeholder", stmt)
	}
	r, err := s.Query(ctx, stmt)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rows[0][0]; got != weird {
		t.Errorf("round trip = %q, want %q", got, weird)
	}
}
