package schema_test

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// ddlRE finds the statements that make or remove a table or view. Migrations always qualify names
// with {db}, which Load replaces by the database it is given.
var ddlRE = regexp.MustCompile(`(?i)^\s*(CREATE|DROP)\s+(?:TABLE|(?:MATERIALIZED\s+)?VIEW)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?db\.(\w+)`)

// The embedded migrations, replayed in order, leave exactly the tables and views schema names
// (less schema_migrations, which migrate makes in Go): a migration adding a table or view must
// name it in names.go, and a name there must be something a migration creates.
func TestNamesAreTheMigrations(t *testing.T) {
	ms, err := migrate.Load("db")
	if err != nil {
		t.Fatal(err)
	}
	made := map[string]bool{}
	for _, m := range ms {
		for _, stmt := range m.Statements {
			if strings.Contains(strings.ToUpper(stmt), "RENAME") {
				t.Errorf("%04d_%s renames something: teach this test RENAME/EXCHANGE", m.Version, m.Name)
			}
			g := ddlRE.FindStringSubmatch(stmt)
			if g == nil {
				continue
			}
			if strings.EqualFold(g[1], "CREATE") {
				made[g[2]] = true
			} else {
				delete(made, g[2])
			}
		}
	}
	want := slices.DeleteFunc(schema.Names(), func(n string) bool { return n == schema.SchemaMigrations })
	compareNames(t, "the migrations", keys(made), want)
}

// The same against ClickHouse: what migrate.Apply leaves in the database, schema_migrations
// included, is what schema names.
func TestNamesAreWhatApplyCreates(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT name FROM system.tables WHERE database = "+store.QuoteString(s.Database()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range r.Rows {
		got = append(got, row[0].(string))
	}
	compareNames(t, "system.tables", got, schema.Names())
}

func compareNames(t *testing.T, where string, got, want []string) {
	t.Helper()
	for _, n := range got {
		if !slices.Contains(want, n) {
			t.Errorf("%s has %s, which schema does not name (add it to names.go)", where, n)
		}
	}
	for _, n := range want {
		if !slices.Contains(got, n) {
			t.Errorf("schema names %s, which %s lacks", n, where)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
