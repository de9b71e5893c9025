package migrate_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/gpufleet/gpufleet/gpumetric"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/migrate"
	"github.com/gpufleet/gpufleet/store"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestApplyTwiceChangesNothing(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	first, err := migrate.Apply(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || first[len(first)-1] != migrate.Latest() {
		t.Fatalf("first run applied %v, want up to %d", first, migrate.Latest())
	}
	second, err := migrate.Apply(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second run applied %v, want nothing", second)
	}
}

// Every metric in the registry has a column of the right type: the schema and the catalogue agree.
func TestSchemaMatchesRegistry(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT name, type FROM system.columns WHERE database = "+store.QuoteString(s.Database())+
		" AND table = 'gpu_samples'")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, row := range r.Rows {
		types[row[0].(string)] = row[1].(string)
	}
	for _, m := range gpumetric.All() {
		want := map[gpumetric.Kind]string{gpumetric.Gauge: "Nullable(Float32)", gpumetric.Counter: "Nullable(UInt64)"}[m.Kind]
		if got := types[m.Column]; got != want {
			t.Errorf("column %s: type %q, want %q", m.Column, got, want)
		}
	}
	for _, col := range []string{"time", "cluster", "node", "gpu", "uuid", "model", "job_id", "agent_id", "seq"} {
		if _, ok := types[col]; !ok {
			t.Errorf("gpu_samples lacks %s", col)
		}
	}
}

func TestLoadRejectsBadDatabase(t *testing.T) {
	if _, err := migrate.Load("x; DROP TABLE y"); err == nil {
		t.Fatal("Load accepted an unsafe database name")
	}
	ms, err := migrate.Load("gpufleet")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(ms, func(a, b migrate.Migration) int { return a.Version - b.Version }) {
		t.Fatal("migrations not sorted")
	}
}
