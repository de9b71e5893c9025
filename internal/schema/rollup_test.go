package schema_test

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
)

var update = flag.Bool("update", false, "rewrite the generated migration")

// Each shipped rollup migration is exactly what its generator makes from the registry and the
// levels as that migration left them (schema.Historic). Shipped migrations never change: a metric,
// dim or aggregate added later comes by a new migration, and its row here pins it.
func TestMigrationsMatchGenerators(t *testing.T) {
	all := gpumetric.All()
	for _, c := range []struct{ file, sql string }{
		{"0005_rollups.sql", schema.SQL(schema.Historic(5), all[:22])},
		{"0008_rollup_agent_metrics.sql", schema.UpgradeSQL(schema.Historic(8), all[:22], all[:31], "0008")},
		{"0010_rollup_placement.sql", schema.DimsSQL(schema.Historic(9), schema.Historic(10), all[:31],
			"0010", "rack and pool labels in the rollups (gpu_samples and gpu_events got them in 0009)")},
		{"0011_rollup_gauge_last.sql", schema.ColumnsSQL(schema.Historic(10), schema.Historic(11), all[:31],
			"0011", "each gauge's last reading per GPU per minute and hour (the current value panels show)")},
		{"0014_rollup_mig_gpm.sql", schema.UpgradeSQL(schema.Historic(14), all[:31], all[:36], "0014")},
		{"0015_rollup_gpu_digests.sql", schema.ColumnsSQL(schema.Historic(14), schema.Historic(15), all[:36],
			"0015", "a t-digest per GPU-hour (a GPU's or a job's percentiles, GPUs ranked by p99), gpu_1h fed from gpu_samples")},
		// jobs is the other view target; the raw tables had their windows since 0001, named again so
		// that the on-cluster form (replicated_deduplication_window) reaches clusters made before.
		{"0017_dedup_windows.sql", schema.DedupSQL(schema.Historic(17), []string{"jobs", "gpu_samples", "gpu_events", "ingest_gaps"},
			"0017", "deduplication windows on the rollups and jobs, so an insert replayed with its token counts in no table twice")},
		{"0018_rollup_counter_readings.sql", schema.ColumnsSQL(schema.Historic(17), schema.Historic(18), all[:36],
			"0018", "per GPU-minute each counter's readings and the first sample's time, so a counter's increase by job reads gpu_1m exactly when the job changes within a minute")},
		{"0020_rollup_counter_values.sql", schema.ColumnsSQL(schema.Historic(19), schema.Historic(20), all[:36],
			"0020", "each counter's first and last reading per GPU-minute as plain values, so a counter's increase reads gpu_1m without finalizing two states per row")},
		{"0023_rollup_failure_metrics.sql", schema.UpgradeSQL(schema.Historic(23), all[:36], all[:50], "0023")},
		{"0025_rollup_packed_readings.sql", schema.PackSQL(schema.Historic(24), schema.Historic(25), all[:50],
			"0025", "each gauge's last reading per GPU-minute and hour packed in a plain UInt128 as the counters' are, and the argMin/argMax states dropped: a state per aggregate per row is most of what the per-GPU views cost when a block holds one reading per GPU")},
		{"0028_rollup_minute_folded.sql", schema.ViewsSQL(schema.Historic(27), schema.Historic(28), all[:50],
			"0028", "gpu_1m's view leaves out the rows ingest folded into gpu_1m itself (gpu_1m's bit set in gpu_samples.folded, 0027): one partial row per GPU-minute from ingest instead of one per GPU per block from the view")},
		{"0029_rollup_hour_folded.sql", schema.FoldSQL(schema.Historic(28), schema.Historic(29), all[:50],
			"0029", "gpu_1h folded in ingest as gpu_1m is (its bit in gpu_samples.folded, which its view now leaves out): one partial row per GPU-hour per fold, its t-digests made by ingest as the engine's state and sent as bytes through the Null table gpu_1h_fold, whose view casts them")},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("migrations", c.file)
			if *update {
				if err := os.WriteFile(path, []byte(c.sql), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/schema -update writes it)", err)
			}
			if string(want) != c.sql {
				t.Errorf("%s differs from its generator (go test ./internal/schema -update if intended)", path)
			}
		})
	}
}

func TestHistoricIsCurrent(t *testing.T) {
	if got := schema.Historic(99); !reflect.DeepEqual(got, schema.Levels) {
		t.Errorf("Historic(99) = %+v, want the current levels", got)
	}
}
