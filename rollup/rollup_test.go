package rollup_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/gpufleet/gpufleet/gpumetric"
	"github.com/gpufleet/gpufleet/rollup"
)

var update = flag.Bool("update", false, "rewrite the generated migration")

// The shipped migration is exactly what the generator makes from the registry. Shipped migrations
// never change: a metric added later gets its rollup columns from a new migration, and this test
// then pins 0005 to the registry prefix it was generated from.
func TestMigrationMatchesGenerator(t *testing.T) {
	path := filepath.Join("..", "deploy", "migrations", "0005_rollups.sql")
	// The metrics and dims of 0005; later ones come by UpgradeSQL and DimsSQL.
	got := rollup.SQL(rollup.Historic(5), gpumetric.All()[:22])
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./rollup -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from rollup.SQL (go test ./rollup -update if intended)", path)
	}
}

// 0008 is UpgradeSQL from the 22 metrics of 0005 to the 31 rollup.Covered names.
func TestUpgradeMigrationMatchesGenerator(t *testing.T) {
	path := filepath.Join("..", "deploy", "migrations", "0008_rollup_agent_metrics.sql")
	got := rollup.UpgradeSQL(rollup.Historic(8), gpumetric.All()[:22], gpumetric.All()[:rollup.Covered], "0008")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./rollup -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from rollup.UpgradeSQL (go test ./rollup -update if intended)", path)
	}
}

// 0010 is DimsSQL adding the placement labels to the levels 0008 left.
func TestDimsMigrationMatchesGenerator(t *testing.T) {
	path := filepath.Join("..", "deploy", "migrations", "0010_rollup_placement.sql")
	got := rollup.DimsSQL(rollup.Historic(9), rollup.Historic(10), gpumetric.All()[:rollup.Covered],
		"0010", "rack and pool labels in the rollups (gpu_samples and gpu_events got them in 0009)")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./rollup -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from rollup.DimsSQL (go test ./rollup -update if intended)", path)
	}
}

// 0011 is ColumnsSQL adding the gauges' last readings to the per-GPU levels 0010 left.
func TestLastGaugesMigrationMatchesGenerator(t *testing.T) {
	path := filepath.Join("..", "deploy", "migrations", "0011_rollup_gauge_last.sql")
	got := rollup.ColumnsSQL(rollup.Historic(10), rollup.Historic(11), gpumetric.All()[:rollup.Covered],
		"0011", "each gauge's last reading per GPU per minute and hour (the current value panels show)")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./rollup -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from rollup.ColumnsSQL (go test ./rollup -update if intended)", path)
	}
	if len(rollup.Historic(11)) != len(rollup.Levels) || !rollup.Historic(11)[1].LastGauges {
		t.Errorf("Historic(11) is not the current levels")
	}
}
