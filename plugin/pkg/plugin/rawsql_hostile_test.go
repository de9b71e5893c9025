package plugin_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

// The hostile statements through the plugin's raw SQL mode, on a datasource made by Grafana's
// instance factory from jsonData as a user configures it: refused ones are a 400 in the frame's
// response, harmless ones run, and nothing changes.
func TestRawSQLHostile(t *testing.T) {
	w := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	jsonData, _ := json.Marshal(map[string]any{"chdbPath": testenv.DataDir(t), "database": w.Database()})
	inst, err := plugin.NewDatasource(ctx, backend.DataSourceInstanceSettings{JSONData: jsonData})
	if err != nil {
		t.Fatal(err)
	}
	ds := inst.(*plugin.Datasource)
	defer ds.Dispose()
	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	end := time.Now()
	for _, c := range testenv.HostileSQL(t, w.Database(), dir) {
		resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{
			dataQuery("A", end.Add(-time.Hour), end, map[string]any{"queryType": "sql", "rawSql": c.SQL})}})
		if err != nil {
			t.Fatal(err)
		}
		r := resp.Responses["A"]
		switch {
		case c.Refuse && r.Error == nil:
			t.Errorf("ran %q", c.SQL)
		case c.Refuse && r.Status != backend.StatusBadRequest:
			t.Errorf("%q: status %d (%v), want 400", c.SQL, r.Status, r.Error)
		case !c.Refuse && r.Error != nil:
			t.Errorf("refused %q: %v", c.SQL, r.Error)
		}
		if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
			t.Fatalf("after %q:\n%s\nwas\n%s", c.SQL, after, before)
		}
	}
}
