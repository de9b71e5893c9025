package query_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

func TestExpandMacros(t *testing.T) {
	w := query.Window{From: modelFrom, To: modelFrom.Add(time.Hour), Interval: 1500 * time.Millisecond}
	cases := []struct{ in, want string }{
		{"SELECT count() FROM s WHERE $__timeFilter(time)",
			"SELECT count() FROM s WHERE (time >= fromUnixTimestamp64Milli({gf_from:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({gf_to:Int64}, 'UTC'))"},
		{"SELECT $__timeInterval(toDateTime(t)) AS b, $__interval_s",
			"SELECT toStartOfInterval(toDateTime(t), toIntervalSecond({gf_interval_s:UInt32})) AS b, {gf_interval_s:UInt32}"},
		{"WHERE $__conditionalAll(node IN ('a', 'b,c'), 'a') AND $__conditionalAll(job_id = 'x', $__all)",
			"WHERE node IN ('a', 'b,c') AND 1=1"},
		{"SELECT $__fromTime, $__toTime, '$__timeFilter' AS s",
			"SELECT fromUnixTimestamp64Milli({gf_from:Int64}, 'UTC'), fromUnixTimestamp64Milli({gf_to:Int64}, 'UTC'), '$__timeFilter' AS s"},
	}
	for _, c := range cases {
		got, p, err := query.ExpandMacros(c.in, w)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.in, got, c.want)
		}
		if p["gf_interval_s"] != "2" || p["gf_from"] != "1714521600000" {
			t.Errorf("params %v: interval rounds up to whole seconds, from is in ms", p)
		}
	}
	for _, bad := range []string{"WHERE $__timeFilter(time", "WHERE $__timeFilter(a, b)", "WHERE $__conditionalAll(x)"} {
		if _, _, err := query.ExpandMacros(bad, w); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", bad, err)
		}
	}
}

// Raw SQL runs read-only: reads work with macros bound to the window, and every way of writing,
// reading files or lifting the restriction is refused by gpufleet or by the engine.
func TestRunSQLReadOnly(t *testing.T) {
	st, rs := seed(t)
	ctx := context.Background()
	w := query.Window{From: seedFrom.Add(time.Minute), To: seedFrom.Add(3 * time.Minute), Interval: time.Minute}
	tbl := store.Table(st.Database(), "gpu_samples")
	r, err := query.RunSQL(ctx, st, "-- per minute\nSELECT $__timeInterval(time) AS t, count() FROM "+tbl+
		" WHERE $__timeFilter(time) AND $__conditionalAll(cluster = 'a', $__all) GROUP BY t ORDER BY t;", w)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for _, x := range rs {
		if !x.t.Before(w.From) && x.t.Before(w.To) {
			want[x.t.Truncate(time.Minute).Format(time.DateTime)]++
		}
	}
	if len(r.Rows) != 2 {
		t.Fatalf("%d minutes, want 2: %v", len(r.Rows), r.Rows)
	}
	for _, row := range r.Rows {
		if n := row[1].(uint64); n != want[row[0].(string)] {
			t.Errorf("minute %v: %d rows, want %d", row[0], n, want[row[0].(string)])
		}
	}

	attacks := []string{
		"INSERT INTO " + tbl + " (node) VALUES ('x')",
		"DROP TABLE " + tbl,
		"/* looks harmless */ ALTER TABLE " + tbl + " DELETE WHERE 1",
		"SELECT 1; DROP TABLE " + tbl,
		"SELECT * FROM file('/etc/passwd', 'LineAsString')",
		"SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
		"SELECT 1 SETTINGS readonly = 0",
		"SELECT 1 FORMAT TSV",
		"WITH 1 AS x INSERT INTO " + tbl + " (node) SELECT 'x'",
		"SELECT 1 --",
	}
	for _, a := range attacks {
		_, err := query.RunSQL(ctx, st, a, w)
		if a == "SELECT 1 --" {
			if err != nil { // a trailing comment is harmless and must not hide the readonly setting
				t.Errorf("%q: %v", a, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q ran", a)
		}
	}
	res, err := st.Query(ctx, "SELECT count() FROM "+tbl+" WHERE node = 'x'")
	if err != nil || res.Rows[0][0].(uint64) != 0 {
		t.Fatalf("a write got through: %v %v", res, err)
	}
	res, err = st.Query(ctx, "SELECT count() FROM "+tbl)
	if err != nil || res.Rows[0][0].(uint64) != uint64(len(rs)) {
		t.Fatalf("the table changed: %v %v", res, err)
	}
}
