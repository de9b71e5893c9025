package query_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// Every SQL example in docs/schema.md runs against the schema migrate creates.
func TestSchemaDocExamplesRun(t *testing.T) {
	doc, err := os.ReadFile("../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(examples) < 4 {
		t.Fatalf("found %d SQL examples in docs/schema.md, want at least 4", len(examples))
	}
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	for _, ex := range examples {
		sql := strings.TrimSuffix(strings.TrimSpace(strings.ReplaceAll(ex[1], "gpufleet.", st.Database()+".")), ";")
		if _, err := st.Query(ctx, sql); err != nil {
			t.Errorf("example fails: %v\n%s", err, ex[1])
		}
	}
}
