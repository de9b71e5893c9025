package migrate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// BenchmarkColumnCodecs is the measurement behind the gpu_samples column types and codecs: an hour
// of the simulated 1,024-GPU fleet at 1 s (as BenchmarkBytesPerValue), then each of the costly
// columns copied into a table of its own, ordered as gpu_samples is, once per candidate type and
// codec, merged, and its compressed bytes per value logged (-v) as a table:
//
//	go test -run '^$' -bench ColumnCodecs -benchtime 1x -v ./internal/schema/migrate/
func BenchmarkColumnCodecs(b *testing.B) {
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-time.Hour).Truncate(time.Hour)
	if _, err := (seed.Fleet{Seed: 5, Nodes: 128, GPUsPerNode: 8, Clusters: []string{"bench"}, Driver: "570.124.06",
		From: start, To: start.Add(time.Hour), Step: time.Second}).Write(ctx, st); err != nil {
		b.Fatal(err)
	}
	db := st.Database()
	// A candidate: the stored type and the expression that makes it from the column.
	type form struct{ name, typ, expr string }
	float := form{"Float32", "Nullable(Float32)", "%s"}
	ints := func(typ string, scale int) form {
		name := typ
		expr := "%s"
		if scale != 1 {
			name = fmt.Sprintf("%s×%d", typ, scale)
			expr = fmt.Sprintf("round(%%s * %d)", scale)
		}
		return form{name, "Nullable(" + typ + ")", "to" + typ + "(" + expr + ")"}
	}
	columns := []struct {
		col   string
		forms []form
	}{
		{"gpu_util", []form{float, ints("UInt8", 1)}},
		{"mem_util", []form{float, ints("UInt8", 1)}},
		{"fb_used_mib", []form{float, ints("UInt32", 1)}},
		{"power_w", []form{float, ints("UInt32", 1000)}},
		{"temp_gpu_c", []form{float, ints("UInt8", 1)}},
		{"pcie_tx_kibs", []form{float, ints("UInt32", 1)}},
		{"pcie_rx_kibs", []form{float, ints("UInt32", 1)}},
		{"sm_active", []form{float, ints("UInt16", 10)}},
		{"tensor_active", []form{float, ints("UInt16", 10)}},
		{"energy_mj", []form{{"UInt64", "Nullable(UInt64)", "%s"}}},
		{"nvlink_tx_kib", []form{{"UInt64", "Nullable(UInt64)", "%s"}}},
	}
	codecs := []string{"ZSTD(1)", "ZSTD(3)", "Delta, ZSTD(1)", "DoubleDelta, ZSTD(1)", "Gorilla, ZSTD(1)", "T64, ZSTD(1)"}
	var out strings.Builder
	fmt.Fprintf(&out, "\n| column | type | %s |\n|---|---|%s\n", strings.Join(codecs, " | "), strings.Repeat("---|", len(codecs)))
	for _, c := range columns {
		for _, f := range c.forms {
			fmt.Fprintf(&out, "| %s | %s |", c.col, f.name)
			for _, codec := range codecs {
				isFloat := strings.Contains(f.typ, "Float")
				if (isFloat && strings.HasPrefix(codec, "T64")) || (!isFloat && strings.HasPrefix(codec, "Gorilla")) {
					out.WriteString(" — |")
					continue
				}
				tbl := store.Table(db, "codec_probe")
				stmts := []string{
					"DROP TABLE IF EXISTS " + tbl,
					fmt.Sprintf("CREATE TABLE %s (cluster LowCardinality(String), node LowCardinality(String), gpu UInt8, time DateTime64(3, 'UTC'), v %s CODEC(%s)) "+
						"ENGINE = MergeTree ORDER BY (cluster, node, gpu, time)", tbl, f.typ, codec),
					fmt.Sprintf("INSERT INTO %s SELECT cluster, node, gpu, time, %s FROM %s", tbl, fmt.Sprintf(f.expr, c.col), store.Table(db, "gpu_samples")),
					"OPTIMIZE TABLE " + tbl + " FINAL",
				}
				for _, s := range stmts {
					if err := st.Exec(ctx, s); err != nil {
						b.Fatalf("%s: %v", s, err)
					}
				}
				r, err := st.Query(ctx, fmt.Sprintf("SELECT sum(column_data_compressed_bytes), (SELECT count(v) FROM %s) FROM system.parts_columns "+
					"WHERE database = '%s' AND table = 'codec_probe' AND active AND column = 'v'", tbl, db))
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(&out, " %.3f |", toFloat(r.Rows[0][0])/max(toFloat(r.Rows[0][1]), 1))
			}
			out.WriteString("\n")
		}
	}
	b.Log(out.String())
	b.ReportMetric(0, "ns/op")
}
